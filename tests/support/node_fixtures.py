"""pytest fixtures for the real-node tier (tests/node): a registry with the product's images, a control
plane with a real node (realnode.py), and helm against it.

The images are built and pushed once per session, as a user does (`make images REGISTRY=… PUSH=1`);
the builder's layer cache and the llama-cpp wheel in .cache/wheels make that a few seconds to a
minute when tests/images (or an earlier run) built them already. The cluster is per test module:
one real node at a time per host (kube-proxy owns the host's KUBE-* chains), and each module starts
from a clean node.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.chart import run_helm
from tests.support.cluster_objects import ClusterObjects
from tests.support.controlplane import ControlPlane, missing_binaries
from tests.support.podman import podman
from tests.support.realnode import RealNode, control_plane_for_real_node, missing_prerequisites
from tests.support.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
TAG = "test"


class NodeCluster(ClusterObjects):
    """What `real_cluster` yields: the control plane, its real node, and kubectl helpers."""

    def __init__(self, cp: ControlPlane, node: RealNode, home: Path) -> None:
        self.cp, self.node = cp, node
        self.kubectl = cp.kubectl
        self.helm_env = {
            "KUBECONFIG": str(cp.kubeconfig),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def helm(self, *args: str) -> str:
        return run_helm(*args, env=self.helm_env).stdout

    def logs(self, pod: str, namespace: str, *args: str) -> str:
        """`kubectl logs`: the apiserver fetches it from the kubelet, as on any cluster."""
        res = self.kubectl("logs", "-n", namespace, pod, *args, check=False)
        return res.stdout + res.stderr

    def describe(self, namespace: str) -> str:
        """Pods, events and each container's last log lines: printed when a test fails."""
        out = [self.kubectl("get", "pods,events", "-n", namespace, "-o", "wide", check=False).stdout]
        for pod in self.get("pods", namespace=namespace)["items"]:
            name = pod["metadata"]["name"]
            out.append(f"--- {name}: {json.dumps(pod.get('status', {}).get('containerStatuses', []))[:2000]}")
            out.append(self.logs(name, namespace, "--all-containers", "--tail=30"))
        return "\n".join(out)


CHART_DIR = ROOT / "helm" / "localmodel"
RELEASE_NS = "localmodel"


def install_chart(c: NodeCluster, images: dict[str, str]) -> str:
    """`helm install` with the chart's `registry` and `tag` naming the pushed images, as a user with
    a private registry does; returns the router's base URL on its Service ClusterIP."""
    c.kubectl("create", "namespace", RELEASE_NS)
    values = ["--set", f"registry={images['registry']}", "--set", f"tag={images['tag']}"]
    values += ["--set", "operator.logFormat=plain"]
    c.helm("install", "lm", str(CHART_DIR), "-n", RELEASE_NS, *values, "--wait", "--timeout=5m")
    router_ip = c.get("service", "lm-localmodel-router", RELEASE_NS)["spec"]["clusterIP"]
    return f"http://{router_ip}:8080"


def require_node_prerequisites() -> None:
    missing = missing_binaries() + missing_prerequisites()
    if missing:
        pytest.fail(f"the real-node tests need: {'; '.join(missing)} -- run `make test-node`", pytrace=False)


@pytest.fixture(scope="session")
def node_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with Registry(tmp_path_factory.mktemp("node-registry")) as running:
        yield running


@pytest.fixture(scope="session")
def node_images(node_registry: Registry) -> Iterator[dict[str, str]]:
    """`make images REGISTRY=<registry>/localmodel PUSH=1` for the operator and llama-cpp-cpu.

    Yields the chart's `registry` and `tag` values and the image names; the local names carry the
    registry's random port, so they are untagged afterwards (the layer cache stays)."""
    registry = f"{node_registry.address}/localmodel"
    command = ["make", "-C", str(ROOT), "images", f"REGISTRY={registry}", "PUSH=1", f"TAG={TAG}"]
    command.append("TARGETS=operator llama-cpp-cpu")
    images = {
        "operator": f"{registry}/operator:{TAG}",
        "llama-cpp-cpu": f"{registry}/runtime:{TAG}-llama-cpp-cpu",
    }
    started = time.monotonic()
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=3000, check=False, env=dict(os.environ)
    )
    assert result.returncode == 0, result.stderr[-5000:]
    print(f"\n[node] images built and pushed in {time.monotonic() - started:.0f}s")
    try:
        yield {"registry": registry, "tag": TAG, **images}
    finally:
        podman("rmi", "--ignore", *images.values(), check=False)


@pytest.fixture(scope="module")
def real_cluster(node_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    require_node_prerequisites()
    started = time.monotonic()
    with control_plane_for_real_node() as cp, RealNode(cp, registries=(node_registry.address,)) as node:
        print(f"\n[node] control plane and real node {node.name} up in {time.monotonic() - started:.1f}s")
        yield NodeCluster(cp, node, tmp_path_factory.mktemp("helm"))
