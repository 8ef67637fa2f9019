"""LocalAI's `alias:` models in a cluster: a LocalModel whose spec says `alias: <model name>` serves
nothing itself; the router answers its name (`spec.name`, else the object's name) with the model it
names. Kept apart from ClusterState so that discovery only has to hand each LocalModel event here."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from localmodel_router.table import ModelTable
from localmodel_runtime.resource.claims import Claim, claim_of

Key = tuple[str, str]  # (namespace, object name)


def alias_of(obj: dict[str, Any]) -> tuple[str, str] | None:
    """(name, target) of a LocalModel that is an alias, else None."""
    spec = obj.get("spec") or {}
    target = spec.get("alias")
    if not isinstance(target, str) or not target:
        return None
    name = spec.get("name") or (obj.get("metadata") or {}).get("name")
    return (str(name), target) if name else None


class ClusterAliases:
    """The alias LocalModels seen by the watch, written into the table's aliases. Two that claim one
    name: the oldest holds it, by the same order as model names (resource/claims.py)."""

    def __init__(self, table: ModelTable) -> None:
        self.table = table
        self.names: dict[Key, tuple[str, str, Claim]] = {}
        """object key → (alias name, target, its claim on the name)."""

    def apply(self, key: Key, event: str, obj: dict[str, Any]) -> bool:
        """Take one LocalModel event; True when the object is now an alias (it then has no model entry)."""
        previous = self.names.pop(key, None)
        alias = alias_of(obj) if event != "DELETED" else None
        if alias is not None:
            self.names[key] = (*alias, claim_of(obj))
            self._settle(alias[0])
        if previous is not None and (alias is None or alias[0] != previous[0]):
            self._settle(previous[0])
        return alias is not None

    def keep_only(self, namespace: str | None, keep: Collection[Key]) -> None:
        """A relist of `namespace` (None: all) holds `keep`: forget the aliases it no longer has."""
        for key in [k for k in self.names if (namespace is None or k[0] == namespace) and k not in keep]:
            self._settle(self.names.pop(key)[0])

    def _settle(self, name: str) -> None:
        claims = [(claim, target) for n, target, claim in self.names.values() if n == name]
        self.table.set_alias(name, min(claims)[1] if claims else None)
