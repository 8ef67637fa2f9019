"""The real node's lifecycle on the host: stopping it leaves nothing behind, also with a pod running,
and a node that fails to start names the failing component, shows its log, and leaves nothing.

Each test starts its own node on a control plane of this module (the node is what is under test)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support.controlplane import ControlPlane
from tests.support.node_fixtures import NodeCluster, require_node_prerequisites
from tests.support.realnode import RealNode, RealNodeError, control_plane_for_real_node
from tests.support.registry import Registry

pytestmark = [pytest.mark.node, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def control_plane() -> Iterator[ControlPlane]:
    require_node_prerequisites()
    with control_plane_for_real_node() as cp:
        yield cp


def test_stop_with_a_pod_running_leaves_nothing(
    control_plane: ControlPlane,
    node_registry: Registry,
    node_images: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    node = RealNode(control_plane, registries=(node_registry.address,))
    try:
        node.start()
        c = NodeCluster(control_plane, node, tmp_path_factory.mktemp("helm"))
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "sleeper", "namespace": "default"},
            "spec": {
                "containers": [{"name": "s", "image": node_images["operator"], "command": ["sleep", "3600"]}],
                "terminationGracePeriodSeconds": 30,
            },
        }
        c.kubectl("apply", "-f", "-", input=json.dumps(pod))
        c.wait(
            lambda: c.get("pod", "sleeper", "default").get("status", {}).get("podIP"),
            timeout=300,
            what="the pod to get an IP",
        )
        # What a running pod holds on the host, so the check below has something to miss.
        assert node.leftovers(), "a running node should show processes, mounts and rules"
        assert node.ctr("tasks", "ls", "-q").stdout.split(), "no container tasks while a pod runs"
    finally:
        node.stop()
    assert node.leftovers() == []
    assert not node.paths.root.exists()


def test_stop_after_the_kubelet_was_killed_leaves_nothing(
    control_plane: ControlPlane, node_images: dict[str, str], node_registry: Registry
) -> None:
    # No drain through the kubelet: the pod's sandbox, netns, veth and CNI rules are removed by hand.
    node = RealNode(control_plane, registries=(node_registry.address,))
    try:
        node.start()
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "orphan", "namespace": "default"},
            "spec": {
                "containers": [{"name": "s", "image": node_images["operator"], "command": ["sleep", "3600"]}]
            },
        }
        control_plane.kubectl("apply", "-f", "-", input=json.dumps(pod))
        NodeCluster.wait(
            lambda: node.ctr("tasks", "ls", "-q").stdout.count("\n") >= 2,
            timeout=300,
            what="sandbox and container",
        )
        node.kill("kubelet")
    finally:
        node.stop()
    control_plane.kubectl("delete", "pod", "orphan", "--force", "--grace-period=0", check=False)
    assert node.leftovers() == []


def test_a_node_that_cannot_start_names_the_component_and_leaves_nothing(control_plane: ControlPlane) -> None:
    # kubelet 1.36 refuses this machine's cgroup v1 layout unless failCgroupV1 is false.
    node = RealNode(control_plane, kubelet_overrides={"failCgroupV1": True})
    with pytest.raises(RealNodeError) as failed:
        node.start(timeout=120)
    message = str(failed.value)
    assert message.startswith("kubelet exited"), message
    assert "cgroup v1" in message, message  # the kubelet's own words, from its log
    assert node.leftovers() == []
