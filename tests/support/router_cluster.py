"""The real `localmodel-router` process against the test control plane, as a ServiceAccount bound to
the chart's router rules (helm/localmodel/files/router-rules.yaml), never as admin."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.fixtures import Cluster
from tests.support.router_process import RouterProcess

ROOT = Path(__file__).resolve().parents[2]
ROUTER_RULES = ROOT / "helm" / "localmodel" / "files" / "router-rules.yaml"
AUTOSETUP_RULES = ROOT / "helm" / "localmodel" / "files" / "router-autosetup-rules.yaml"
CRD = ROOT / "crds" / "localmodel.yaml"
ROUTER_ROLE = "localmodel-router-test"
AUTOSETUP_ROLE = "localmodel-router-autosetup-test"
JsonDict = dict[str, Any]


def install_crd_and_role(cluster: Cluster) -> None:
    """The LocalModel CRD and a ClusterRole holding exactly the chart's router rules (idempotent)."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))

    def established() -> bool:
        crd = cluster.get("crd", "localmodels.localmodel.dev")
        conditions = crd.get("status", {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    cluster.wait(established, timeout=60, what="the LocalModel CRD established")
    for name, rules in ((ROUTER_ROLE, ROUTER_RULES), (AUTOSETUP_ROLE, AUTOSETUP_RULES)):
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": yaml.safe_load(rules.read_text(encoding="utf-8")),
        }
        cluster.kubectl("apply", "-f", "-", input=json.dumps(role))


def router_kubeconfig(
    cluster: Cluster, namespace: str, directory: Path, cluster_wide: bool, auto_setup: bool = False
) -> Path:
    """A kubeconfig for ServiceAccount `router` in `namespace`, bound to the router rules in that
    namespace only (RoleBinding) or everywhere (ClusterRoleBinding, named after the namespace); with
    `auto_setup`, also to the automatic-setup rules in that namespace, as the chart binds them."""
    cluster.kubectl("create", "serviceaccount", "router", "-n", namespace)
    subject = f"--serviceaccount={namespace}:router"
    if auto_setup:
        cluster.kubectl(
            "create",
            "rolebinding",
            "router-autosetup",
            "-n",
            namespace,
            f"--clusterrole={AUTOSETUP_ROLE}",
            subject,
        )
    if cluster_wide:
        cluster.kubectl(
            "create", "clusterrolebinding", f"router-{namespace}", f"--clusterrole={ROUTER_ROLE}", subject
        )
    else:
        cluster.kubectl(
            "create", "rolebinding", "router", "-n", namespace, f"--clusterrole={ROUTER_ROLE}", subject
        )
    token = cluster.kubectl("create", "token", "router", "-n", namespace, "--duration=2h").stdout.strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "test",
                "cluster": {
                    "server": cluster.server,
                    "certificate-authority": str(cluster.cp.pki_dir / "ca.crt"),
                },
            }
        ],
        "users": [{"name": "router", "user": {"token": token}}],
        "contexts": [
            {"name": "test", "context": {"cluster": "test", "user": "router", "namespace": namespace}}
        ],
        "current-context": "test",
    }
    path = directory / f"router-{namespace}.kubeconfig"
    path.write_text(json.dumps(config), encoding="utf-8")
    path.chmod(0o600)
    return path


def drop_cluster_binding(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("delete", "clusterrolebinding", f"router-{namespace}", "--wait=false", check=False)


@pytest.fixture(name="router_role", scope="module")
def router_role_fixture(control_plane: Cluster) -> Cluster:
    """The control plane with the CRD and the router's ClusterRole installed."""
    install_crd_and_role(control_plane)
    return control_plane


@pytest.fixture(name="start_router")
def start_router_fixture(
    router_role: Cluster, namespace: str, tmp_path: Path
) -> Iterator[Callable[..., RouterProcess]]:
    """`start_router(*args, all_namespaces=False, auto_setup=False)`: a router for the test's namespace
    (or all), as ServiceAccount `router` of that namespace (with automatic setup's rights there when
    `auto_setup`); stopped (and its binding dropped) after the test."""
    started: list[RouterProcess] = []
    cluster_wide: list[bool] = []

    def start(*args: str, all_namespaces: bool = False, auto_setup: bool = False) -> RouterProcess:
        if not started:
            kubeconfig = router_kubeconfig(
                router_role, namespace, tmp_path, cluster_wide=all_namespaces, auto_setup=auto_setup
            )
            cluster_wide.append(all_namespaces)
        else:
            kubeconfig = tmp_path / f"router-{namespace}.kubeconfig"
        where = ["--all-namespaces"] if all_namespaces else ["--namespace", namespace]
        router = RouterProcess([*where, *args], tmp_path / f"router-{len(started)}.log", kubeconfig)
        started.append(router)
        return router.wait_ready()

    yield start
    for router in started:
        router.stop()
    if cluster_wide and cluster_wide[0]:
        drop_cluster_binding(router_role, namespace)
