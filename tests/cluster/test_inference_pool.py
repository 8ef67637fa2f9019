"""InferencePools (Gateway API Inference Extension) on the real API server, with the upstream CRD and
under the chart's RBAC: one per LocalModel when enabled, owned by it and garbage-collected with it;
without the CRD, one warning Event and the model served as usual."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.support.fixtures import Cluster
from tests.support.inference_pool_crd import inference_pool_crd
from tests.support.operator_process import operator_on

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

T = TypeVar("T")
CRD = "inferencepools.inference.networking.k8s.io"
PICKER = {"name": "epp", "port": {"number": 9002}}


def eventually(check: Callable[[], T | None], what: str, bound: float = 90) -> T:
    deadline = time.monotonic() + bound
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def get(cluster: Cluster, kind: str, name: str, ns: str) -> dict[str, Any] | None:
    res = cluster.kubectl("get", kind, name, "-n", ns, "-o", "json", check=False)
    return json.loads(res.stdout) if res.returncode == 0 else None


def local_model(name: str) -> str:
    spec = {"backend": "llama", "parameters": {"model": "tiny.gguf"}, "deployment": {"replicas": 0}}
    return json.dumps(
        {
            "apiVersion": "localmodel.dev/v1alpha1",
            "kind": "LocalModel",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def warnings(cluster: Cluster, ns: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get("events", namespace=ns)["items"]
    return [
        e
        for e in items
        if e["involvedObject"].get("name") == name and e["reason"] == "InferencePoolUnavailable"
    ]


def test_a_pool_per_model_once_the_crd_is_there(
    control_plane: Cluster, namespace: str, tmp_path: Path
) -> None:
    config = {"namespaces": [namespace], "inferencePool": {"enabled": True, "endpointPickerRef": PICKER}}
    crd = inference_pool_crd()
    with contextlib.contextmanager(operator_on)(control_plane, tmp_path, config):
        # No CRD yet: the model is reconciled, with one warning saying why it has no pool.
        control_plane.apply(local_model("early"), namespace)
        found = eventually(lambda: warnings(control_plane, namespace, "early"), "the warning Event")
        assert found[0]["type"] == "Warning" and CRD in found[0]["message"]
        eventually(lambda: get(control_plane, "deployment", "early", namespace), "early's Deployment")
        try:
            control_plane.kubectl("apply", "--server-side", "-f", str(crd))
            control_plane.kubectl("wait", "--for", "condition=established", f"crd/{CRD}", "--timeout=60s")
            control_plane.apply(local_model("pooled"), namespace)
            pool = eventually(lambda: get(control_plane, "inferencepool", "pooled", namespace), "the pool")
            model = get(control_plane, "localmodel", "pooled", namespace)
            deployment = eventually(
                lambda: get(control_plane, "deployment", "pooled", namespace), "Deployment"
            )
            assert model is not None
            (owner,) = pool["metadata"]["ownerReferences"]
            assert owner["kind"] == "LocalModel" and owner["uid"] == model["metadata"]["uid"]
            selector = deployment["spec"]["selector"]["matchLabels"]
            assert pool["spec"]["selector"]["matchLabels"] == selector
            assert pool["spec"]["targetPorts"] == [{"number": 8080}]
            assert pool["spec"]["endpointPickerRef"]["name"] == "epp"
            assert len(warnings(control_plane, namespace, "early")) == 1  # said once, no hot loop
            control_plane.kubectl("delete", "localmodel", "pooled", "-n", namespace, "--wait=true")
            eventually(
                lambda: get(control_plane, "inferencepool", "pooled", namespace) is None, "the pool's GC"
            )
        finally:
            control_plane.kubectl("delete", "crd", CRD, "--ignore-not-found=true", "--wait=true")
