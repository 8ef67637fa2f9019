"""End to end on the real node, as a user runs the product on a cluster.

`helm install` with the chart's `registry` pointing at the local registry (images pushed there by
`make images REGISTRY=… PUSH=1`) → the operator and router run from the built image, as 65532 on a
read-only root filesystem, under the chart's RBAC → `kubectl apply` the Gemma example → the runtime
pod's init container fetches Gemma into its volume, its readiness probe passes → the official
`openai` client, through the router's Service ClusterIP (kube-proxy), gets a completion and a
streamed chat reply → `kubectl logs` shows the request → `kubectl delete` → pods gone and the router
answers `model_not_found`. The one change to the example: Gemma's URL is an HTTP server on this host
(pods reach it on the node's bridge; the example's `pypi://` package is not in the runtime image),
with the example's own sha256 checked by the fetch.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from tests.support.cluster_objects import condition
from tests.support.http_files import serve_directory
from tests.support.node_fixtures import RELEASE_NS, NodeCluster, install_chart
from tests.support.realnode_config import GATEWAY

pytestmark = [pytest.mark.node, pytest.mark.slow, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "localmodels" / "gemma-3-270m.yaml"
MODEL = "gemma-3-270m"
MODELS_NS = "models"


def _ready_pods(c: NodeCluster, namespace: str, **labels: str) -> list[dict[str, Any]]:
    pods = c.get("pods", namespace=namespace, **labels)["items"]
    ready = [p for p in pods if condition(p, "Ready").get("status") == "True"]
    return ready


def test_gemma_through_the_chart_on_the_real_node(
    openai_clients: Callable[..., openai.OpenAI],
    real_cluster: NodeCluster,
    node_images: dict[str, str],
    gemma_gguf: Path,
    tmp_path: Path,
) -> None:
    c = real_cluster
    c.kubectl("create", "namespace", MODELS_NS)
    router_url = install_chart(c, node_images)

    # The chart's pods run the pushed image, as 65532, on a read-only root filesystem.
    for component in ("operator", "router"):
        pods = _ready_pods(c, RELEASE_NS, **{"app.kubernetes.io/component": component})
        assert len(pods) == 1, c.describe(RELEASE_NS)
        pod = pods[0]
        container = pod["spec"]["containers"][0]
        assert container["image"] == node_images["operator"]
        assert pod["status"]["containerStatuses"][0]["imageID"].startswith(node_images["registry"])
        assert pod["spec"]["serviceAccountName"] == f"lm-localmodel-{component}"
        name = pod["metadata"]["name"]
        assert c.kubectl("exec", "-n", RELEASE_NS, name, "--", "id", "-u").stdout.strip() == "65532"
        denied = c.kubectl("exec", "-n", RELEASE_NS, name, "--", "touch", "/opt/written", check=False)
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr, denied

    client = openai_clients(f"{router_url}/v1", timeout=120)

    files = tmp_path / "files"
    files.mkdir()
    shutil.copyfile(gemma_gguf, files / "gemma-3-270m-q4_k_m.gguf")
    example = yaml.safe_load(EXAMPLE.read_text())
    with serve_directory(files, host=GATEWAY) as url:
        example["spec"]["download_files"][0]["uri"] = f"{url}/gemma-3-270m-q4_k_m.gguf"
        applied = time.monotonic()
        c.kubectl("apply", "-n", MODELS_NS, "-f", "-", input=yaml.safe_dump(example))
        ready = partial(c.ready_local_model, MODEL, MODELS_NS)
        try:
            lm = c.wait(ready, timeout=600, what="the Gemma LocalModel to be Ready")
        except BaseException:
            print(c.describe(MODELS_NS))
            print(c.logs("deploy/lm-localmodel-operator", RELEASE_NS, "--tail=50"))
            raise
    ready_at = time.monotonic()
    assert lm["status"]["readyReplicas"] == 1

    def first_token() -> float | None:
        try:
            stream = client.completions.create(
                model=MODEL,
                prompt="Q: What is the capital of France?\nA:",
                max_tokens=4,
                temperature=0,
                stream=True,
            )
            for chunk in stream:
                if chunk.choices and chunk.choices[0].text:
                    return time.monotonic()
        except (openai.NotFoundError, openai.APIConnectionError, openai.InternalServerError):
            return None  # the router has not discovered the ready pod yet
        return None

    token_at = c.wait(first_token, timeout=120, what="a first token through the router")
    print(
        f"\n[node] cold start apply -> Ready {ready_at - applied:.1f}s, "
        f"apply -> first token through the router {token_at - applied:.1f}s"
        f" ({_image_pull(c)})"
    )

    completion = client.completions.create(
        model=MODEL, prompt="Q: What is the capital of France?\nA:", max_tokens=16, temperature=0
    )
    assert "Paris" in completion.choices[0].text
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say this is a test!"}],
        max_tokens=24,
        temperature=0,
        stream=True,
    )
    pieces = [choice.delta.content or "" for chunk in stream for choice in chunk.choices]
    assert sum(1 for piece in pieces if piece) > 1, pieces  # streamed, not one buffered body
    assert "".join(pieces).strip()

    runtime = c.get("pods", namespace=MODELS_NS, **{"localmodel.dev/model": MODEL})["items"][0]
    assert runtime["spec"]["containers"][0]["image"] == node_images["llama-cpp-cpu"]
    logs = c.logs(runtime["metadata"]["name"], MODELS_NS, "-c", "runtime")
    assert '"POST /v1/completions HTTP/1.1" 200' in logs, logs[-3000:]
    assert '"POST /v1/chat/completions HTTP/1.1" 200' in logs, logs[-3000:]

    c.kubectl("delete", "-n", MODELS_NS, "localmodel", MODEL, "--wait=true", "--timeout=120s")

    def gone() -> bool:
        return not c.get("pods", namespace=MODELS_NS, **{"localmodel.dev/model": MODEL})["items"]

    c.wait(gone, timeout=180, what="the runtime pods to go")

    def not_found() -> str | None:
        try:
            client.completions.create(model=MODEL, prompt="hello", max_tokens=4)
        except openai.NotFoundError as missing:
            return str(missing.code)
        return None

    assert c.wait(not_found, timeout=60, what="the router to answer model_not_found") == "model_not_found"


def _image_pull(c: NodeCluster) -> str:
    """How the runtime image got onto the node during the cold start: the kubelet's pull Event
    ("Successfully pulled image … in …"), or that it was there already."""
    events = c.get("events", namespace=MODELS_NS)["items"]
    pulled = [
        e["message"] for e in events if e.get("reason") == "Pulled" and "Successfully pulled" in e["message"]
    ]
    return pulled[0] if pulled else "the image was already on the node"
