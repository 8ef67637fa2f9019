"""Automatic setup end to end: a request naming a Hugging Face file that no LocalModel serves yet
creates one, the operator turns it into a pod that fetches the file and serves it, and the held
request is answered with tokens.

The "Hugging Face" here is a directory served over HTTP by the test in the Hub's URL layout
(`/{owner}/{repo}/resolve/main/{file}`); the operator's `runtimeEnv` points the runtime pods'
HF_ENDPOINT at it, as a cluster with a Hub mirror would.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest

from tests.support.fixtures import Cluster
from tests.support.http_files import serve_directory
from tests.support.operator_process import OperatorProcess, operator_on
from tests.support.router_cluster import RouterProcess, router_role_fixture, start_router_fixture  # noqa: F401

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(600)]

REPO = "TheBloke/Tiny-GGUF"
FILE = "tiny.Q4_K_M.gguf"


@pytest.fixture(scope="module")
def hub(control_plane: Cluster, tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("hub")
    target = root / REPO / "resolve" / "main" / FILE
    target.parent.mkdir(parents=True)
    shutil.copyfile(tiny_gguf, target)
    with serve_directory(root, host=control_plane.node.host_ip) as url:
        yield url


@pytest.fixture(scope="module")
def operator_proc(
    control_plane: Cluster, hub: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    config = {"runtimeEnv": [{"name": "HF_ENDPOINT", "value": hub}]}
    yield from operator_on(control_plane, tmp_path_factory.mktemp("autosetup-operator"), config)


def test_request_creates_the_model_which_is_fetched_started_and_answers(
    openai_clients: Callable[..., openai.OpenAI],
    control_plane: Cluster,
    operator_proc: OperatorProcess,
    start_router: Callable[..., RouterProcess],
    namespace: str,
) -> None:
    router = start_router(
        "--auto-setup",
        "--auto-setup-allow-repo",
        "TheBloke/*",
        "--auto-setup-wait",
        "240",
        "--cold-start-timeout",
        "240",
        auto_setup=True,
    )
    client = openai_clients(router.url + "/v1", timeout=300)
    requested = f"{REPO}/{FILE}"
    try:
        completion = client.completions.create(model=requested, prompt="hello", max_tokens=8, seed=1)
    except openai.APIError:
        for pod in control_plane.get("pods", namespace=namespace)["items"]:
            name = pod["metadata"]["name"]
            print(f"--- pod {name}: {pod.get('status')}")
            for container in ("fetch", "runtime"):
                print(control_plane.logs(name, namespace, container)[-3000:])
        print(operator_proc.output())
        print(router.output())
        raise
    assert completion.model == requested
    assert completion.usage is not None and completion.usage.completion_tokens > 0

    (created,) = control_plane.get("localmodels", namespace=namespace)["items"]
    assert created["metadata"]["annotations"]["localmodel.dev/auto-created"] == "true"
    # The router sees the ready endpoint as soon as the EndpointSlice has it; the operator's status
    # follows from the Deployment a moment later.
    name = created["metadata"]["name"]
    control_plane.wait(
        lambda: control_plane.get("localmodel", name, namespace).get("status", {}).get("readyReplicas") == 1,
        timeout=60,
        what="status.readyReplicas 1",
    )
    # The file came from the mirror through the fetch init container.
    (pod,) = control_plane.get("pods", namespace=namespace)["items"]
    assert FILE in control_plane.logs(pod["metadata"]["name"], namespace, "fetch")

    # Asked again: the same model answers, nothing new is created.
    again = client.completions.create(model=requested, prompt="hello", max_tokens=8, seed=1)
    assert again.choices[0].text == completion.choices[0].text
    assert len(control_plane.get("localmodels", namespace=namespace)["items"]) == 1
