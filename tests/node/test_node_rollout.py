"""A one-replica model rolled on the real node while clients use it through the chart's router.

Here the endpoint's removal travels as on any cluster (the EndpointSlice, the router's watch, kube-proxy
for the router's Service) while the kubelet runs the runtime pod's preStop sleep, then SIGTERM, which the
runtime answers by draining. No request that arrives during the rollout is answered 502 (each waits or
is retried), and the stream in flight on the old pod finishes, or ends with an error event: it never
hangs.

The CPU model surges a new pod before the old one stops, so a request the router still sends to the
old pod once it stopped listening would be retried on the new one: this passes without the preStop
sleep too (checked). The sleep is what spares the requests when there is no other ready replica.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from tests.support.cluster_objects import condition
from tests.support.http_files import serve_directory
from tests.support.node_fixtures import NodeCluster, install_chart
from tests.support.realnode_config import GATEWAY
from tests.support.rollout_clients import Stream, Traffic, answers, settle_and_check

pytestmark = [pytest.mark.node, pytest.mark.slow, pytest.mark.timeout(1200)]

NAME = "rolled"


@pytest.fixture(scope="module")
def router_url(real_cluster: NodeCluster, node_images: dict[str, str]) -> str:
    return install_chart(real_cluster, node_images)


@pytest.fixture(scope="module")
def files(
    real_cluster: NodeCluster, tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The tiny model on an HTTP server the pods reach (the node's bridge address)."""
    root = tmp_path_factory.mktemp("node-files")
    shutil.copyfile(tiny_gguf, root / "tiny.gguf")
    with serve_directory(root, host=GATEWAY) as url:
        yield url


@pytest.fixture
def namespace(real_cluster: NodeCluster) -> Iterator[str]:
    name = f"r-{uuid.uuid4().hex[:8]}"
    real_cluster.kubectl("create", "namespace", name)
    yield name
    real_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def local_model(url: str, tiny_gguf: Path) -> dict[str, Any]:
    digest = hashlib.sha256(tiny_gguf.read_bytes()).hexdigest()
    return {
        "apiVersion": "localmodel.dev/v1alpha1",
        "kind": "LocalModel",
        "metadata": {"name": NAME},
        "spec": {
            "name": NAME,
            "backend": "llama",
            "context_size": 4096,
            "options": ["parallel:4"],
            "parameters": {"model": "tiny.gguf", "ignore_eos": True},
            "download_files": [{"filename": "tiny.gguf", "uri": f"{url}/tiny.gguf", "sha256": digest}],
            # A small CPU request: the surge pod must fit next to the old one on the 2-core node.
            "deployment": {"replicas": 1, "resources": {"requests": {"cpu": "100m"}}},
        },
    }


def runtime_pods(c: NodeCluster, namespace: str) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = c.get("pods", namespace=namespace, **{"localmodel.dev/model": NAME})["items"]
    return pods


def test_a_one_replica_rollout_on_the_real_node_answers_every_request_and_ends_the_stream(
    openai_clients: Callable[..., openai.OpenAI],
    real_cluster: NodeCluster,
    router_url: str,
    files: str,
    namespace: str,
    tiny_gguf: Path,
) -> None:
    c = real_cluster
    c.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(local_model(files, tiny_gguf)))
    client = openai_clients(f"{router_url}/v1", timeout=120)
    try:
        c.wait(lambda: answers(client, NAME), 600, "the model to answer through the router")
    except BaseException:
        print(c.describe(namespace))
        raise
    (old,) = runtime_pods(c, namespace)

    stream = Stream(client, NAME)
    stream.start()
    assert stream.started.wait(60), "the stream never started"
    traffic = Traffic(client, NAME)
    traffic.start()
    # A changed model config (a new config hash on the pod template) rolls the pod.
    c.kubectl(
        "patch", "localmodel", NAME, "-n", namespace, "--type=merge", "-p", '{"spec":{"context_size":2048}}'
    )

    def rolled() -> bool:
        pods = runtime_pods(c, namespace)
        fresh = [p for p in pods if p["metadata"]["uid"] != old["metadata"]["uid"]]
        return len(fresh) == len(pods) and any(condition(p, "Ready").get("status") == "True" for p in fresh)

    try:
        c.wait(rolled, 300, "the old pod gone and a new one Ready")
    except BaseException:
        print(c.describe(namespace))
        raise
    settle_and_check(traffic, stream, c.wait, "node")
