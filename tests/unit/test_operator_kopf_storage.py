"""What kopf keeps about handled LocalModels: a change handled at once writes nothing to the object."""

from __future__ import annotations

from typing import Any

import kopf

from localmodel_operator.kopf_storage import LEGACY_KEY, MemoryDiffBase, ProgressAnnotations


def local_model(uid: str, spec: dict[str, Any], **meta: Any) -> kopf.Body:
    return kopf.Body(
        {
            "apiVersion": "localmodel.dev/v1alpha1",
            "kind": "LocalModel",
            "metadata": {"name": "m", "namespace": "ns", "uid": uid, "resourceVersion": "7", **meta},
            "spec": spec,
            "status": {"observedGeneration": 1},
        }
    )


def test_store_writes_nothing_to_the_object_and_fetch_returns_what_was_stored() -> None:
    storage = MemoryDiffBase()
    body = local_model("u1", {"backend": "llama"})
    assert storage.fetch(body=body) is None  # never handled: kopf sees a creation
    patch = kopf.Patch()
    essence = storage.build(body=body)
    storage.store(body=body, patch=patch, essence=essence)
    assert not patch  # kopf sends no PATCH for an empty patch
    assert storage.fetch(body=local_model("u1", {"backend": "llama"})) == {"spec": {"backend": "llama"}}
    assert storage.fetch(body=local_model("u2", {"backend": "llama"})) is None


def test_the_essence_ignores_status_and_the_annotation_earlier_operators_wrote() -> None:
    storage = MemoryDiffBase()
    before = local_model("u1", {"backend": "llama"})
    after = local_model(
        "u1", {"backend": "llama"}, annotations={LEGACY_KEY: '{"spec": {}}', "team": "a"}, generation=1
    )
    assert storage.build(body=after) == {
        "spec": {"backend": "llama"},
        "metadata": {"annotations": {"team": "a"}},
    }
    assert storage.build(body=before) == {"spec": {"backend": "llama"}}


def test_forget_drops_a_deleted_models_essence() -> None:
    storage = MemoryDiffBase()
    body = local_model("u1", {"backend": "llama"})
    storage.store(body=body, patch=kopf.Patch(), essence=storage.build(body=body))
    assert len(storage) == 1
    storage.forget(dict(body))
    assert len(storage) == 0 and storage.fetch(body=body) is None


def test_a_handler_that_succeeds_at_once_leaves_no_progress_patch() -> None:
    body = local_model("u1", {"backend": "llama"})
    record: kopf.ProgressRecord = {"started": "2026-12-07T00:00:00", "success": True, "retries": 1}
    for storage, expected_writes in (
        (ProgressAnnotations(), False),
        (kopf.AnnotationsProgressStorage(prefix="localmodel.dev"), True),
    ):
        patch = kopf.Patch()
        storage.store(key=kopf.HandlerId("reconcile"), record=record, body=body, patch=patch)
        assert "localmodel.dev/reconcile" in patch["metadata"]["annotations"]
        storage.purge(key=kopf.HandlerId("reconcile"), body=body, patch=patch)
        # kopf's own storage keeps its prefix marker in the patch, which alone costs a PATCH.
        assert bool(patch.get("metadata", {}).get("annotations")) is expected_writes, patch


def test_a_retry_is_still_recorded_on_the_object() -> None:
    body = local_model("u1", {"backend": "llama"})
    patch = kopf.Patch()
    record: kopf.ProgressRecord = {"started": "2026-12-07T00:00:00", "retries": 1, "delayed": "x"}
    ProgressAnnotations().store(key=kopf.HandlerId("reconcile"), record=record, body=body, patch=patch)
    assert list(patch["metadata"]["annotations"]) == ["localmodel.dev/reconcile"]
