"""pytest fixtures for a real control plane plus a process node (see controlplane.py).

Register with `from tests.support.fixtures import control_plane, namespace  # noqa: F401` in a
conftest. Missing binaries fail loudly (never skip): a cluster test that silently skips tests
nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.cluster_objects import ClusterObjects
from tests.support.controlplane import BIN_DIR, ControlPlane, missing_binaries
from tests.support.processnode import ProcessNode


class Cluster(ClusterObjects):
    """What the `control_plane` fixture yields: the control plane, its process node, helpers."""

    def __init__(self, cp: ControlPlane, node: ProcessNode) -> None:
        self.cp, self.node = cp, node
        self.kubeconfig = cp.kubeconfig
        self.server = cp.server
        self.kubectl = cp.kubectl

    def apply(self, manifest: str, namespace: str) -> None:
        self.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)

    def logs(self, pod: str, namespace: str, container: str | None = None) -> str:
        """A container's output (`kubectl logs` needs a kubelet API the process node lacks)."""
        obj = self.get("pod", pod, namespace)
        name = container or obj["spec"]["containers"][0]["name"]
        path = self.node.dir / "pods" / obj["metadata"]["uid"] / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture(scope="session")
def control_plane() -> Iterator[Cluster]:
    missing = missing_binaries()
    if missing:
        pytest.fail(
            f"control-plane binaries missing from {BIN_DIR}: {', '.join(missing)} -- run `make k8s-bins`",
            pytrace=False,
        )
    with ControlPlane() as cp:
        node = ProcessNode(cp.kubeconfig, cp.ports["apiserver"], workdir=cp.dir / "node", backoff_base=1.0)
        node.start()
        try:
            yield Cluster(cp, node)
        finally:
            node.stop()


@pytest.fixture
def namespace(control_plane: Cluster) -> Iterator[str]:
    """A fresh namespace per test (deleted afterwards without waiting)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)
