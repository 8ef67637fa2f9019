"""The operator watching named namespaces (`-n`, the chart's `watchNamespaces`) under the chart's RBAC.

kopf lists and watches Namespaces whenever it is given namespaces rather than `-A`; without that right
in the chart's rules it retried a Forbidden list for ~55 s, logging errors, before it fell back to the
named namespaces and reconciled (found by bench/scale_bench.py). Its own module: an `-A` operator
running beside it would hide the failure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fixtures import Cluster
from tests.support.operator_process import OperatorProcess, grant_operator_rbac, install_crd

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


@pytest.fixture
def namespaced_operator(control_plane: Cluster, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    cp = control_plane.cp
    install_crd(cp.kubectl)
    kubeconfig = grant_operator_rbac(cp.kubectl, cp.server, cp.pki_dir / "ca.crt", tmp_path / "op.kubeconfig")
    op = OperatorProcess(kubeconfig, tmp_path, args=("-n", namespace))
    op.start()
    yield op
    op.stop()
    print(f"--- operator log (tail) ---\n{op.output(60)}")


def test_operator_limited_to_a_namespace_reconciles_under_the_chart_rules(
    control_plane: Cluster, namespace: str, namespaced_operator: OperatorProcess
) -> None:
    model = {
        "apiVersion": "localmodel.dev/v1alpha1",
        "kind": "LocalModel",
        "metadata": {"name": "scoped"},
        "spec": {"backend": "llama", "parameters": {"model": "tiny.gguf"}, "deployment": {"replicas": 0}},
    }
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(model))

    def observed() -> bool:
        lm = control_plane.get("localmodel", "scoped", namespace)
        return (lm.get("status") or {}).get("observedGeneration") == lm["metadata"]["generation"]

    control_plane.wait(observed, timeout=90, what="the namespaced operator to report a status")
    forbidden = [r for r in namespaced_operator.records() if "forbidden" in str(r.get("message", "")).lower()]
    assert not forbidden, forbidden
