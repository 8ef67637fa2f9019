"""Faults on the real node, where the kubelet's restart policy, probes and image pulls are real.

* The runtime container's process is killed (SIGKILL from the host, as the OOM killer would): the
  kubelet restarts it, a client in flight gets an error and not a hang, and new requests succeed
  once the pod is Ready again.
* A model whose load fails: the runtime exits, the kubelet backs off (CrashLoopBackOff), and the
  LocalModel is Degraded with the runtime's termination reason, with an Event.
* An image the registry does not have: ImagePullBackOff, and the LocalModel is Degraded naming it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.support.cluster_objects import condition
from tests.support.http_files import serve_directory
from tests.support.node_fixtures import NodeCluster, install_chart
from tests.support.realnode_config import GATEWAY

pytestmark = [pytest.mark.node, pytest.mark.slow, pytest.mark.timeout(1200)]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "localmodels" / "gemma-3-270m.yaml"
GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"


@pytest.fixture(scope="module")
def router_url(real_cluster: NodeCluster, node_images: dict[str, str]) -> str:
    return install_chart(real_cluster, node_images)


@pytest.fixture(scope="module")
def files(
    real_cluster: NodeCluster, gemma_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Model files on an HTTP server the pods reach (the node's bridge address): Gemma and a file
    that is not a model at all."""
    root = tmp_path_factory.mktemp("node-files")
    shutil.copyfile(gemma_gguf, root / GEMMA_FILE)
    (root / "broken.gguf").write_bytes(b"this is not a GGUF file\n" * 64)
    with serve_directory(root, host=GATEWAY) as url:
        yield url


@pytest.fixture
def namespace(real_cluster: NodeCluster) -> Iterator[str]:
    name = f"f-{uuid.uuid4().hex[:8]}"
    real_cluster.kubectl("create", "namespace", name)
    yield name
    real_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _model(name: str, url: str, filename: str, sha256: str, backend: str = "llama") -> dict[str, Any]:
    example = yaml.safe_load(EXAMPLE.read_text())
    example["metadata"]["name"] = name
    example["spec"]["name"] = name
    example["spec"]["backend"] = backend
    example["spec"]["parameters"]["model"] = filename
    example["spec"]["download_files"] = [{"filename": filename, "sha256": sha256, "uri": f"{url}/{filename}"}]
    # A small CPU request, so that a model of an earlier test still terminating cannot leave this one
    # unschedulable on the 2-core node.
    example["spec"]["deployment"]["resources"]["requests"]["cpu"] = "100m"
    return dict(example)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _degraded(c: NodeCluster, name: str, namespace: str, reason: str) -> dict[str, Any] | None:
    found = condition(c.get("localmodel", name, namespace), "Degraded")
    return found if found.get("status") == "True" and found.get("reason") == reason else None


def _runtime_pod(c: NodeCluster, name: str, namespace: str) -> dict[str, Any] | None:
    pods = c.get("pods", namespace=namespace, **{"localmodel.dev/model": name})["items"]
    return pods[0] if pods else None


def _ready(pod: dict[str, Any] | None) -> bool:
    return pod is not None and condition(pod, "Ready").get("status") == "True"


def test_killed_runtime_is_restarted_in_flight_request_fails_fast_new_ones_succeed(
    openai_clients: Callable[..., openai.OpenAI],
    real_cluster: NodeCluster,
    router_url: str,
    files: str,
    namespace: str,
    gemma_gguf: Path,
) -> None:
    c = real_cluster
    model = _model("gemma", files, GEMMA_FILE, _sha256(gemma_gguf))
    c.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(model))
    try:
        pod = c.wait(
            lambda: (p := _runtime_pod(c, "gemma", namespace)) and _ready(p) and p, 600, "gemma Ready"
        )
    except BaseException:
        print(c.describe(namespace))
        raise
    client = openai_clients(f"{router_url}/v1", timeout=120)
    c.wait(lambda: _answers(client), 120, "the router to serve gemma")

    # A long generation in flight; the runtime's main process dies under it.
    outcome: dict[str, Any] = {}
    streaming = threading.Event()

    def in_flight() -> None:
        try:
            stream = client.chat.completions.create(
                model="gemma",
                messages=[{"role": "user", "content": "Write a very long story about the sea."}],
                max_tokens=2000,
                stream=True,
            )
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    streaming.set()
            outcome["result"] = "completed"
        except Exception as exc:  # an API error, or the transport's error for a stream cut mid-way
            outcome["result"] = exc
        finally:
            streaming.set()

    thread = threading.Thread(target=in_flight, daemon=True)
    thread.start()
    assert streaming.wait(120), "the in-flight request never streamed"
    container_id = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    task = c.node.ctr("tasks", "ls").stdout
    pid = next(int(line.split()[1]) for line in task.splitlines() if line.startswith(container_id))
    os.kill(pid, signal.SIGKILL)
    thread.join(150)  # bounded: the client's own timeout is 120 s
    assert not thread.is_alive(), "the in-flight request hung"
    result = outcome["result"]
    assert isinstance(result, Exception), f"the in-flight request {result} although its runtime died"
    timeouts = (openai.APITimeoutError, httpx.TimeoutException)
    assert not isinstance(result, timeouts), f"the in-flight request waited out its timeout: {result!r}"
    print(f"\n[node] the in-flight request ended with {type(result).__name__}: {result}")

    def restarted() -> dict[str, Any] | None:
        p = _runtime_pod(c, "gemma", namespace)
        return p if p and p["status"]["containerStatuses"][0]["restartCount"] >= 1 and _ready(p) else None

    restarted_pod = c.wait(restarted, 300, "the kubelet to restart the runtime and the pod to be Ready")
    assert restarted_pod["metadata"]["uid"] == pod["metadata"]["uid"]  # the same pod, restarted in place
    last = restarted_pod["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 137, last  # SIGKILL
    assert c.wait(lambda: _answers(client), 120, "a new request to succeed")


def _answers(client: openai.OpenAI) -> bool:
    try:
        reply = client.completions.create(model="gemma", prompt="The capital of France is", max_tokens=4)
    except openai.APIError:
        return False
    return bool(reply.choices)


def test_a_model_that_fails_to_load_is_degraded_with_the_runtime_reason(
    real_cluster: NodeCluster, router_url: str, files: str, namespace: str, tmp_path: Path
) -> None:
    c = real_cluster
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"this is not a GGUF file\n" * 64)  # the same bytes the file server has
    c.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=yaml.safe_dump(_model("broken", files, "broken.gguf", _sha256(broken))),
    )

    def crash_looping() -> dict[str, Any] | None:
        pod = _runtime_pod(c, "broken", namespace)
        statuses = (pod or {}).get("status", {}).get("containerStatuses") or []
        waiting = statuses[0].get("state", {}).get("waiting", {}) if statuses else {}
        return pod if waiting.get("reason") == "CrashLoopBackOff" else None

    try:
        c.wait(crash_looping, 300, "the runtime to be in CrashLoopBackOff")
        degraded = c.wait(
            lambda: _degraded(c, "broken", namespace, "ModelLoadError"), 120, "Degraded: ModelLoadError"
        )
    except BaseException:
        print(c.describe(namespace))
        raise
    assert "broken" in degraded["message"], degraded
    events = c.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=broken"
    ).stdout
    assert "ModelLoadError" in events, events


def test_an_image_the_registry_lacks_is_degraded_naming_the_image(
    real_cluster: NodeCluster,
    router_url: str,
    files: str,
    namespace: str,
    node_images: dict[str, str],
    gemma_gguf: Path,
) -> None:
    c = real_cluster
    # rwkv's image was not pushed (only operator and llama-cpp-cpu are): a tag the registry lacks.
    missing = f"{node_images['registry']}/runtime:{node_images['tag']}-rwkv"
    model = _model("unpulled", files, GEMMA_FILE, _sha256(gemma_gguf), backend="rwkv")
    c.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(model))
    try:
        degraded = c.wait(
            lambda: _degraded(c, "unpulled", namespace, "ImagePullBackOff"), 300, "Degraded: ImagePullBackOff"
        )
    except BaseException:
        print(c.describe(namespace))
        raise
    assert missing in degraded["message"], degraded
    events = c.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=unpulled"
    ).stdout
    assert "ImagePullBackOff" in events, events
