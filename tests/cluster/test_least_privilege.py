"""The operator under a namespaced Role that lacks one of the chart's rules: it says which right it misses
on the LocalModel (Degraded, reason Forbidden, with an Event) instead of retrying silently. (Working
under exactly the chart's Roles: test_chart.py; the router's side: test_router_k8s.py.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.fixtures import Cluster
from tests.support.operator_process import CLUSTER_RULES_FILE, RULES_FILE, OperatorProcess, install_crd

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]
JsonDict = dict[str, Any]


def without_service_writes(rules: list[JsonDict]) -> list[JsonDict]:
    out = []
    for rule in rules:
        if "services" in rule["resources"]:
            rule = {**rule, "resources": [r for r in rule["resources"] if r != "services"]}
        out.append(rule)
    return out


def account_kubeconfig(cluster: Cluster, namespace: str, account: str, directory: Path) -> Path:
    token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "t", "cluster": {"server": cluster.server, "certificate-authority": str(cluster.cp.pki_dir / "ca.crt")}}  # noqa: E501
        ],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": account, "namespace": namespace}}],
        "current-context": "t",
    }  # fmt: skip
    path = directory / f"{account}.kubeconfig"
    path.write_text(json.dumps(config), encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture
def narrow_operator(control_plane: Cluster, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    """An operator watching `namespace` only, with the chart's rules there minus those on Services."""
    cluster = control_plane
    install_crd(cluster.kubectl)
    rules = without_service_writes(yaml.safe_load(RULES_FILE.read_text()))
    cluster_role = f"{namespace}-narrow-operator"
    subjects = [{"kind": "ServiceAccount", "name": "operator", "namespace": namespace}]
    rbac = "rbac.authorization.k8s.io"
    manifests = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "operator", "namespace": namespace},
        },
        {"apiVersion": f"{rbac}/v1", "kind": "Role", "metadata": {"name": "operator"}, "rules": rules},
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "operator"},
            "roleRef": {"apiGroup": rbac, "kind": "Role", "name": "operator"},
            "subjects": subjects,
        },
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRole",
            "metadata": {"name": cluster_role},
            "rules": yaml.safe_load(CLUSTER_RULES_FILE.read_text()),
        },
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": cluster_role},
            "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": cluster_role},
            "subjects": subjects,
        },
    ]
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(manifests))
    kubeconfig = account_kubeconfig(cluster, namespace, "operator", tmp_path)
    op = OperatorProcess(kubeconfig, tmp_path / "operator", {}, args=("-n", namespace))
    op.start()
    try:
        yield op
    finally:
        op.stop()
        print(f"--- operator log (tail) ---\n{op.output(80)}")
        cluster.kubectl("delete", "clusterrolebinding,clusterrole", cluster_role, check=False)


def test_a_missing_right_is_named_on_the_localmodel(
    control_plane: Cluster, namespace: str, narrow_operator: OperatorProcess
) -> None:
    cluster = control_plane
    spec = {"backend": "llama", "parameters": {"model": "tiny.gguf"}, "deployment": {"replicas": 0}}
    manifest = {
        "apiVersion": "localmodel.dev/v1alpha1",
        "kind": "LocalModel",
        "metadata": {"name": "m"},
        "spec": spec,
    }
    cluster.apply(json.dumps(manifest), namespace)

    def forbidden() -> JsonDict | None:
        lm = cluster.get("localmodel", "m", namespace)
        conditions = {c["type"]: c for c in lm.get("status", {}).get("conditions") or []}
        cond = conditions.get("Degraded") or {}
        return cond if cond.get("reason") == "Forbidden" and cond.get("status") == "True" else None

    cond = cluster.wait(forbidden, timeout=90, what="Degraded/Forbidden")
    assert f"the operator may not read or write Service m in namespace {namespace}" in cond["message"], cond
    assert "watchNamespaces" in cond["message"]

    def warned() -> bool:
        events = cluster.get("events", namespace=namespace)["items"]
        return any(e["reason"] == "Forbidden" and e["involvedObject"]["name"] == "m" for e in events)

    cluster.wait(warned, timeout=30, what="a Forbidden Event")
    assert narrow_operator.alive()
