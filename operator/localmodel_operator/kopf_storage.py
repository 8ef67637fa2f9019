"""What kopf keeps about the LocalModels it handled, chosen so that a handled change writes nothing.

kopf's defaults write to the object after every handled change: the last handled spec (the diff-base)
in an annotation, and a marker annotation naming the prefix of its progress records. That is one more
PATCH per new LocalModel and one more watch event to process, a tenth of what a new model costs the
API server. Neither is worth it here:

- The diff-base lives in memory. At start-up every LocalModel is reconciled anyway (the resume handler
  is the create and update handler), so an essence lost with the process only means "reconcile",
  which is idempotent. Essences are forgotten when their LocalModel is deleted.
- Progress records (a handler's retries) stay in annotations under our prefix, so a retry survives a
  restart; the marker, which only tells *other* kopf operators to ignore that prefix, is not written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from localmodel_runtime.resource import GROUP

LEGACY_KEY = f"{GROUP}/last-handled-configuration"
"""The annotation earlier operators kept the essence in (kopf's annotation storage): not compared."""


class MemoryDiffBase(kopf.DiffBaseStorage):
    """kopf's diff-base storage, keyed by the object's uid, in this process's memory."""

    def __init__(self) -> None:
        super().__init__()
        self._essences: dict[str, kopf.BodyEssence] = {}

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None
    ) -> kopf.BodyEssence:
        essence = super().build(body=body, extra_fields=extra_fields)
        self.remove_annotations(essence, {LEGACY_KEY})
        self.remove_empty_stanzas(essence)
        return essence

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return self._essences.get(_uid(body))

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        self._essences[_uid(body)] = essence  # nothing goes into `patch`: no write to the object

    def forget(self, body: Mapping[str, Any]) -> None:
        self._essences.pop(_uid(body), None)

    def __len__(self) -> int:
        return len(self._essences)


class ProgressAnnotations(kopf.AnnotationsProgressStorage):
    """kopf's annotation progress storage under our prefix, without its `<prefix>/kopf-managed` marker:
    a handler that succeeds at once stores a record and purges it in the same patch, and the marker
    was all that patch ever sent."""

    def __init__(self) -> None:
        super().__init__(prefix=GROUP)

    def _store_marker(self, prefix: str, patch: kopf.Patch, body: kopf.Body) -> None:
        return None


def _uid(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("uid") or "")
