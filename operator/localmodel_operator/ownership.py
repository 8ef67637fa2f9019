"""Whose is an existing object that a LocalModel's child would overwrite: the operator never adopts.

Children are written with server-side apply and `force`, which would take over any object of the same
name: a user's ConfigMap `billing-config` would gain the LocalModel's ownerReference (and be garbage-
collected with it). So before applying a child the operator reads what is there, and applies only over
its own. Pure: the caller reads the object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from localmodel_runtime.resource import KIND

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Ownership:
    """`mine`: the object is this LocalModel's to write. Otherwise `previous` tells an object of an
    earlier LocalModel of the same name (deleted, its children not yet garbage-collected: wait) from a
    foreign one (`message` says whose; the LocalModel is Degraded with reason ChildConflict)."""

    mine: bool
    previous: bool = False
    message: str = ""


MINE = Ownership(mine=True)


def _identity_labels(wanted: Manifest) -> dict[str, str]:
    labels: dict[str, str] = wanted["metadata"].get("labels") or {}
    return {
        k: v for k, v in labels.items() if k.startswith("app.kubernetes.io/") or k.startswith("localmodel")
    }


def _owner_text(refs: list[dict[str, Any]]) -> str:
    if not refs:
        return "it has no owner"
    return "it belongs to " + ", ".join(f"{r.get('kind', '?')} {r.get('name', '?')}" for r in refs)


def ownership(existing: Manifest | None, wanted: Manifest) -> Ownership:
    """Whether `wanted` may be applied over `existing` (None: nothing there yet)."""
    if existing is None:
        return MINE
    meta = existing.get("metadata") or {}
    refs: list[dict[str, Any]] = meta.get("ownerReferences") or []
    wanted_refs: list[dict[str, Any]] = wanted["metadata"].get("ownerReferences") or []
    if wanted_refs:
        uid = wanted_refs[0]["uid"]
        if any(r.get("uid") == uid for r in refs):
            return MINE
        if any(r.get("kind") == KIND and r.get("name") == wanted_refs[0]["name"] for r in refs):
            return Ownership(mine=False, previous=True)
    else:
        # An unowned child (a PVC kept on delete) is recognised by the labels the operator gave it.
        labels = meta.get("labels") or {}
        identity = _identity_labels(wanted)
        if identity and all(labels.get(k) == v for k, v in identity.items()):
            return MINE
    kind, name = wanted["kind"], wanted["metadata"]["name"]
    return Ownership(
        mine=False,
        message=(
            f"{kind} {name} already exists and was not created by this LocalModel ({_owner_text(refs)}); "
            f"it is left untouched: rename the LocalModel or remove the {kind}"
        ),
    )
