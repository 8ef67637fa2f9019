"""End to end on the real control plane: `kubectl apply` the Gemma example, talk to it through the router.

Everything here is the product as users run it: the CRD from crds/, the operator process under the
chart's RBAC rules (not admin), the router as its own ServiceAccount discovering pods through
EndpointSlices, and the runtime pod (fetch init container, then `localmodel-runtime serve`) run by
the process node. Only the official `openai` client talks to the router.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.fixtures import Cluster
from tests.support.operator_process import OperatorProcess, operator_on
from tests.support.router_cluster import RouterProcess, router_role_fixture, start_router_fixture  # noqa: F401

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(600)]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "localmodels" / "gemma-3-270m.yaml"
MODEL = "gemma-3-270m"


@pytest.fixture(scope="module")
def operator_proc(
    control_plane: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    yield from operator_on(control_plane, tmp_path_factory.mktemp("e2e-operator"))


def test_gemma_example_served_through_the_router_then_deleted(
    openai_clients: Callable[..., openai.OpenAI],
    control_plane: Cluster,
    operator_proc: OperatorProcess,
    start_router: Any,
    namespace: str,
) -> None:
    router: RouterProcess = start_router()
    control_plane.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
    ready = partial(control_plane.ready_local_model, MODEL, namespace)
    try:
        lm = control_plane.wait(ready, timeout=420, what="the Gemma LocalModel to be Ready")
    except BaseException:
        pods = control_plane.get("pods", namespace=namespace)["items"]
        for pod in pods:
            name = pod["metadata"]["name"]
            print(f"--- pod {name}: {pod.get('status')}")
            for container in ("fetch", "runtime"):
                print(control_plane.logs(name, namespace, container)[-3000:])
        print(operator_proc.output())
        raise
    assert lm["status"]["modelName"] == MODEL
    assert lm["status"]["readyReplicas"] == 1

    control_plane.wait(
        lambda: router.models().get(MODEL, {}).get("ready"), timeout=60, what="router discovery"
    )
    client = openai_clients(router.url + "/v1", timeout=120)

    completion = client.completions.create(
        model=MODEL, prompt="Q: What is the capital of France?\nA:", max_tokens=16, temperature=0
    )
    assert "Paris" in completion.choices[0].text
    assert completion.usage is not None and completion.usage.completion_tokens > 0

    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say this is a test!"}],
        max_tokens=24,
        temperature=0,
        stream=True,
    )
    pieces: list[str] = []
    finish_reasons: list[str] = []
    for chunk in stream:
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            if choice.finish_reason:
                finish_reasons.append(choice.finish_reason)
    assert sum(1 for piece in pieces if piece) > 1, pieces  # streamed, not one buffered body
    assert "".join(pieces).strip()
    assert finish_reasons in (["stop"], ["length"])

    control_plane.kubectl("delete", "-n", namespace, "-f", str(EXAMPLE), "--wait=true", "--timeout=120s")

    def gone() -> bool:
        pods = control_plane.get("pods", namespace=namespace, **{"localmodel.dev/model": MODEL})["items"]
        return not pods and MODEL not in router.models()

    control_plane.wait(gone, timeout=120, what="pods and the router's entry to go")
    with pytest.raises(openai.NotFoundError) as missing:
        client.completions.create(model=MODEL, prompt="hello", max_tokens=4)
    assert missing.value.code == "model_not_found"
