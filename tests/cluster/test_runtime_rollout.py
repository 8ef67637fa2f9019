"""A one-replica model rolled (its model config changed) while clients use it through the router, on
the real control plane with the operator, the router and the runtime as real processes (the process
node runs the pods, their preStop hooks included).

The runtime pod has a preStop sleep and drains on SIGTERM; the router routes to ready endpoints only,
retries a connection refused before the first byte on another ready endpoint, and holds a request
while the model has none. Together: no request that arrives during the rollout is answered 502 (each
waits or is retried), and the stream in flight on the old pod finishes, or ends with an error event;
it never hangs. Both rolling strategies the operator uses: a CPU model surges a new pod first, a GPU
model (fake GPUs on the process node) replaces its pod, leaving no ready endpoint for a while.

On this one machine the router sees an endpoint go within milliseconds, before the old runtime stops
listening, so these requests are also answered without the preStop sleep (checked): the sleep covers
the slower propagation of a real cluster, which only the real node's tier could show.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.fixtures import Cluster
from tests.support.operator_process import OperatorProcess, operator_on
from tests.support.rollout_clients import Stream, Traffic, answers, settle_and_check
from tests.support.router_cluster import RouterProcess, router_role_fixture, start_router_fixture  # noqa: F401

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(400)]

NAME = "rolled"
JsonDict = dict[str, Any]


@pytest.fixture
def operator(control_plane: Cluster, tmp_path: Path) -> Iterator[OperatorProcess]:
    # The image table's registry must name `localmodel` for the process node to run its runtime.
    config = {"registry": "registry.test/localmodel", "tag": "t1"}
    yield from operator_on(control_plane, tmp_path / "operator", config)


def local_model(model: Path, device: str) -> str:
    spec = {
        "name": NAME,
        "backend": "llama",
        "context_size": 4096,
        "options": ["parallel:4"],
        "parameters": {"model": "tiny.gguf", "ignore_eos": True},
        "download_files": [{"filename": "tiny.gguf", "uri": model.as_uri()}],
        "deployment": {"device": device, "replicas": 1, "resources": {"requests": {"cpu": "100m"}}},
    }
    body = {"apiVersion": "localmodel.dev/v1alpha1", "kind": "LocalModel", "metadata": {"name": NAME}}
    return json.dumps({**body, "spec": spec})


def runtime_pods(cluster: Cluster, namespace: str) -> list[JsonDict]:
    pods: list[JsonDict] = cluster.get("pods", namespace=namespace, **{"localmodel.dev/model": NAME})["items"]
    return pods


def ready(pod: JsonDict) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def describe(cluster: Cluster, namespace: str) -> str:
    return cluster.kubectl(
        "get", "pods,replicasets,events", "-n", namespace, "-o", "wide", check=False
    ).stdout


@pytest.mark.parametrize("device", ["cpu", "nvidia"])
def test_a_one_replica_rollout_answers_every_request_and_ends_the_stream(
    control_plane: Cluster,
    namespace: str,
    operator: OperatorProcess,
    start_router: Callable[..., RouterProcess],
    tiny_gguf: Path,
    device: str,
    openai_clients: Callable[..., openai.OpenAI],
) -> None:
    source = control_plane.cp.dir / f"{namespace}-tiny.gguf"  # not under /tmp, a pod's own emptyDir
    shutil.copyfile(tiny_gguf, source)
    control_plane.apply(local_model(source, device), namespace)
    router = start_router()
    client = openai_clients(f"{router.url}/v1", timeout=120)
    control_plane.wait(lambda: answers(client, NAME), 180, "the model to answer through the router")
    (old,) = runtime_pods(control_plane, namespace)

    stream = Stream(client, NAME)
    stream.start()
    assert stream.started.wait(60), "the stream never started"
    traffic = Traffic(client, NAME)
    traffic.start()

    # A changed model config (a new config hash on the pod template) rolls the pod.
    patch = {"spec": {"context_size": 2048}}
    control_plane.kubectl(
        "patch", "localmodel", NAME, "-n", namespace, "--type=merge", "-p", json.dumps(patch)
    )

    def rolled() -> bool:
        pods = runtime_pods(control_plane, namespace)
        return all(p["metadata"]["uid"] != old["metadata"]["uid"] for p in pods) and any(map(ready, pods))

    try:
        control_plane.wait(rolled, 240, "the old pod gone and a new one Ready")
    except BaseException:
        print(describe(control_plane, namespace), operator.output(40), router.output())
        raise
    settle_and_check(traffic, stream, control_plane.wait, f"rollout {device}")
    assert httpx.get(f"{router.url}/readyz", timeout=5).status_code == 200
