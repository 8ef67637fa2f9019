"""The operator killed (SIGKILL) in the middle of reconciling 50 new LocalModels, then started again, on
the real control plane: it converges.

Every LocalModel ends with exactly one Deployment, Service and ConfigMap of its own (owned by it, as its
controller), nothing of the operator's is left without its LocalModel, no Deployment was written twice
with a different pod template (a second ReplicaSet would roll pods for nothing), every status reports
the current generation, and nothing warned: no Event of type Warning or Error (kopf posts one for a
handler that failed, a 409 conflict among them), none about a conflict.

The models have no replicas, so the process node runs no pods: what is tested is the operator's writes.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localmodel_operator.builders import MODEL_LABEL
from tests.support.fixtures import Cluster
from tests.support.operator_process import OperatorProcess, operator_on

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(600)]

MODELS = 50
CHILD_KINDS = ("deployment", "service", "configmap")
JsonDict = dict[str, Any]


@pytest.fixture
def operator(control_plane: Cluster, tmp_path: Path) -> Iterator[OperatorProcess]:
    yield from operator_on(control_plane, tmp_path / "operator", {"registry": "registry.test/lm", "tag": "t"})


def names() -> list[str]:
    return [f"m-{i:02d}" for i in range(MODELS)]


def local_models() -> str:
    items = [
        {
            "apiVersion": "localmodel.dev/v1alpha1",
            "kind": "LocalModel",
            "metadata": {"name": name},
            "spec": {
                "name": name,
                "backend": "llama",
                "parameters": {"model": "tiny.gguf"},
                "deployment": {"replicas": 0},
            },
        }
        for name in names()
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def items(cluster: Cluster, kind: str, namespace: str) -> list[JsonDict]:
    found: list[JsonDict] = cluster.get(kind, namespace=namespace)["items"]
    return found


def handled(model: JsonDict, deployed: set[str]) -> bool:
    """The model's children are written (the Deployment is applied last of them) and its status is
    current (a refresh ends every reconcile)."""
    meta = model["metadata"]
    status = model.get("status") or {}
    return (
        meta["name"] in deployed
        and status.get("observedGeneration") == meta["generation"]
        and bool(status.get("conditions"))
    )


def converged(cluster: Cluster, namespace: str) -> bool:
    models = items(cluster, "localmodel", namespace)
    deployed = {d["metadata"]["name"] for d in items(cluster, "deployment", namespace)}
    return sum(handled(model, deployed) for model in models) == MODELS


def test_the_operator_killed_mid_reconcile_converges_without_duplicates(
    control_plane: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    control_plane.apply(local_models(), namespace)
    # Kill it as soon as its first writes show: most of the 50 are then still to do, or half done.
    control_plane.wait(
        lambda: items(control_plane, "deployment", namespace), timeout=120, what="the first Deployment"
    )
    operator.kill()
    done = len(items(control_plane, "deployment", namespace))
    print(f"\n[operator] killed with {done} of {MODELS} Deployments written")

    operator.start()
    started = time.monotonic()
    try:
        control_plane.wait(lambda: converged(control_plane, namespace), 300, "every LocalModel reconciled")
    except BaseException:
        print(operator.output(120))
        raise
    print(f"[operator] converged {time.monotonic() - started:.1f}s after the restart")

    models = {m["metadata"]["name"]: m for m in items(control_plane, "localmodel", namespace)}
    assert sorted(models) == names()
    for kind in CHILD_KINDS:
        managed = [
            obj
            for obj in items(control_plane, kind, namespace)
            if (obj["metadata"].get("labels") or {}).get(MODEL_LABEL)
        ]
        per_model = Counter(obj["metadata"]["labels"][MODEL_LABEL] for obj in managed)
        assert per_model == Counter(names()), f"{kind}s per model: {per_model}"
        for obj in managed:
            owner = models.get(obj["metadata"]["labels"][MODEL_LABEL])
            refs = obj["metadata"].get("ownerReferences") or []
            assert owner is not None, f"{kind} {obj['metadata']['name']} outlived its LocalModel"
            assert [(r["kind"], r["uid"], r.get("controller")) for r in refs] == [
                ("LocalModel", owner["metadata"]["uid"], True)
            ], f"{kind} {obj['metadata']['name']}: {refs}"

    # Written once, or again with the same content: never a second pod template (another ReplicaSet).
    replica_sets = Counter(
        ref["name"]
        for rs in items(control_plane, "replicaset", namespace)
        for ref in rs["metadata"].get("ownerReferences") or []
    )
    assert all(count == 1 for count in replica_sets.values()), replica_sets
    for deployment in items(control_plane, "deployment", namespace):
        assert deployment["metadata"]["generation"] == 1, deployment["metadata"]

    for name, model in models.items():
        kinds = {c["type"]: c for c in model["status"]["conditions"]}
        assert set(kinds) == {"Ready", "Progressing", "Degraded"}, (name, kinds)
        assert kinds["Degraded"]["status"] == "False", (name, kinds["Degraded"])
        assert kinds["Ready"]["reason"] == "ScaledToZero", (name, kinds["Ready"])

    events = items(control_plane, "event", namespace)
    # Warnings about LocalModels (the operator's and kopf's); the API server's own repair loops may warn
    # about a Service it is still allocating (ClusterIPNotAllocated), which says nothing of the operator.
    warnings = [
        e for e in events if e.get("type") != "Normal" and e["involvedObject"].get("kind") == "LocalModel"
    ]
    conflicts = [e for e in events if "conflict" in f"{e.get('reason')} {e.get('message')}".lower()]
    assert warnings == [] and conflicts == [], [(e["reason"], e["message"]) for e in warnings + conflicts]
