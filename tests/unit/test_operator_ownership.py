"""Which existing objects a LocalModel's child may be applied over: only its own."""

from __future__ import annotations

from typing import Any

from localmodel_operator.ownership import ownership

LABELS = {"app.kubernetes.io/managed-by": "localmodel-operator", "localmodel.dev/model": "m"}
OWNER = {"apiVersion": "localmodel.dev/v1alpha1", "kind": "LocalModel", "name": "m", "uid": "u-1"}


def child(kind: str, owned: bool) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "m-models", "namespace": "ns", "labels": dict(LABELS)}
    if owned:
        meta["ownerReferences"] = [OWNER]
    return {"apiVersion": "v1", "kind": kind, "metadata": meta}


def test_nothing_there_or_its_own_object_may_be_written() -> None:
    assert ownership(None, child("ConfigMap", owned=True)).mine
    assert ownership({"metadata": {"ownerReferences": [OWNER]}}, child("ConfigMap", owned=True)).mine


def test_an_unowned_child_is_recognised_by_its_labels() -> None:
    # A PVC kept on delete has no owner: the labels the operator gave it say whose it is.
    assert ownership(
        {"metadata": {"labels": {**LABELS, "extra": "x"}}}, child("PersistentVolumeClaim", False)
    ).mine
    users = ownership({"metadata": {"labels": {"team": "a"}}}, child("PersistentVolumeClaim", False))
    assert not users.mine and not users.previous
    assert users.message.startswith("PersistentVolumeClaim m-models already exists")


def test_another_owner_is_named() -> None:
    other = {"kind": "Deployment", "name": "billing", "uid": "x"}
    result = ownership({"metadata": {"ownerReferences": [other]}}, child("Service", owned=True))
    assert not result.mine and "it belongs to Deployment billing" in result.message


def test_an_earlier_model_of_the_same_name_is_waited_for() -> None:
    earlier = {**OWNER, "uid": "u-0"}
    result = ownership({"metadata": {"ownerReferences": [earlier]}}, child("Service", owned=True))
    assert not result.mine and result.previous and result.message == ""
