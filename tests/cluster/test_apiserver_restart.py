"""The kube-apiserver (then etcd) restarted under a running router and operator: the router's `/readyz`
is false while its watches are down (the API server gone; with etcd gone the API server may still hold
the watches) and true once they are back, and what changes after the restart is seen by both (the
router lists and forgets models, the operator reconciles a model created then).

These tests stop and start components of the session's control plane, so they restart it fully before
they end, whatever happens.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.fixtures import Cluster
from tests.support.operator_process import OperatorProcess, operator_on
from tests.support.polling import poll_until
from tests.support.router_cluster import RouterProcess, router_role_fixture, start_router_fixture  # noqa: F401

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]


def localmodel(name: str) -> str:
    return json.dumps(
        {
            "apiVersion": "localmodel.dev/v1alpha1",
            "kind": "LocalModel",
            "metadata": {"name": name},
            "spec": {"name": name, "backend": "llama", "parameters": {"model": "tiny.gguf"}},
        }
    )


def readyz(router: RouterProcess) -> int:
    return httpx.get(router.url + "/readyz", timeout=5).status_code


@pytest.fixture
def operator(control_plane: Cluster, tmp_path: Path) -> Iterator[OperatorProcess]:
    yield from operator_on(control_plane, tmp_path / "operator", {"registry": "registry.test/lm", "tag": "t"})


@pytest.fixture
def restartable(control_plane: Cluster) -> Iterator[Callable[[str], None]]:
    """`restart(component)`: stop it, run the checks the test passes, start it again; a component left
    stopped by a failing test is started again afterwards."""
    stopped: list[str] = []

    def stop(name: str) -> None:
        control_plane.cp.stop_component(name)
        stopped.append(name)

    yield stop
    for name in reversed(stopped):
        if next(c for c in control_plane.cp._components if c.name == name).proc is None:
            control_plane.cp.start_component(name)


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_router_and_operator_follow_the_api_server_across_a_restart(
    control_plane: Cluster,
    namespace: str,
    start_router: Callable[..., RouterProcess],
    operator: OperatorProcess,
    restartable: Callable[[str], None],
    component: str,
) -> None:
    router = start_router()
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=localmodel("before"))
    poll_until(lambda: "before" in router.models(), "the router to list the first model", 60)
    poll_until(
        lambda: (
            control_plane.kubectl("get", "deployment", "before", "-n", namespace, check=False).returncode == 0
        ),
        "the operator to reconcile the first model",
        90,
    )

    restartable(component)
    if component == "kube-apiserver":
        poll_until(lambda: readyz(router) == 503, "/readyz to turn false while the watches are down", 60)
    assert router.proc.poll() is None and operator.proc is not None and operator.proc.poll() is None
    control_plane.cp.start_component(component)
    poll_until(lambda: readyz(router) == 200, "/readyz to turn true once the watches are back", 90)

    # Changes made after the restart reach both: nothing is lost with the old watches.
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=localmodel("after"))
    control_plane.kubectl("delete", "localmodel", "before", "-n", namespace, "--wait=false")
    poll_until(lambda: "after" in router.models(), "the router to list the model created after", 90)
    poll_until(lambda: "before" not in router.models(), "the router to forget the deleted model", 90)
    poll_until(
        lambda: (
            control_plane.kubectl("get", "deployment", "after", "-n", namespace, check=False).returncode == 0
        ),
        "the operator to reconcile the model created after the restart",
        120,
    )
    assert router.proc.poll() is None and operator.proc is not None and operator.proc.poll() is None
