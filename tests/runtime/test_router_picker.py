"""The `loadAware` strategy against real runtimes (tiny generated GGUF model): the router polls each
runtime's `/v1/internal/load` and sends a request to the replica holding its prompt prefix, away from a
replica with a deep queue, and by in-flight counts to a replica whose load endpoint fails.

No timing assertions: every wait is a bounded poll for a state (a runtime's queue, the router's view
of it); the choices themselves are deterministic once that state is there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from localmodel_router.app import RouterApp
from localmodel_router.picker import LoadPicker, LoadState, estimate
from localmodel_router.settings import RouterSettings
from localmodel_router.table import ModelSettings, ModelTable
from localmodel_runtime.prefix_blocks import BLOCK_BYTES, request_blocks
from tests.support.model_configs import one_slot_config
from tests.support.polling import poll_until, wait_until
from tests.support.router_fixtures import FakeRuntime, ThreadServer
from tests.support.runtime_server import RuntimeServer, runtime_servers

MODEL = "tiny"


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[list[RuntimeServer]]:
    # One slot and a long context (tests/runtime/test_server_concurrency.py does the same).
    args = ["--max-waiting", "8"]
    with runtime_servers(tmp_path_factory, 2, one_slot_config(), tiny_gguf.parent, args=args) as servers:
        yield servers


def load_aware_router(addresses: list[str]) -> ThreadServer:
    table = ModelTable()
    table.upsert_model(MODEL, ModelSettings(strategy="loadAware"))
    table.set_endpoints(MODEL, [(a, True) for a in addresses])
    app = RouterApp(table, None, RouterSettings())
    # Keep polling however slowly this machine runs the module (the router stops polling idle models).
    app.forwarder.picker.active_window = 3600.0
    return ThreadServer(app).start()


@pytest.fixture
def router(replicas: list[RuntimeServer]) -> Iterator[ThreadServer]:
    server = load_aware_router([r.base_url.removeprefix("http://") for r in replicas])
    yield server
    server.stop()


def picker(router: ThreadServer) -> LoadPicker:
    app = router.server.config.app
    assert isinstance(app, RouterApp)
    return app.forwarder.picker


def served(runtime: RuntimeServer) -> float:
    """Requests the runtime has finished (any reason)."""
    total = 0.0
    for line in httpx.get(f"{runtime.base_url}/metrics").text.splitlines():
        if line.startswith("vllm:request_success_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def load(runtime: RuntimeServer) -> dict[str, Any]:
    reply = httpx.get(f"{runtime.base_url}/v1/internal/load")
    assert reply.status_code == 200
    document: dict[str, Any] = reply.json()
    return document


def chat(system: str, user: str) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "max_tokens": 2,
    }


def test_a_request_goes_to_the_replica_holding_its_prefix(
    replicas: list[RuntimeServer], router: ThreadServer
) -> None:
    a, b = replicas
    system = "You answer questions about the tides of the North Sea. " * 30
    # The prompt reaches one replica directly (say an earlier turn through another router replica).
    reply = httpx.post(f"{b.api_url}/chat/completions", json=chat(system, "first turn"), timeout=120)
    assert reply.status_code == 200
    blocks = request_blocks(chat(system, "second turn"))
    assert len(blocks) >= 4
    document = load(b)
    assert document["block_bytes"] == BLOCK_BYTES and set(blocks) <= set(document["blocks"])
    assert not set(blocks) & set(load(a)["blocks"])
    view = picker(router)
    poll_until(
        lambda: router.call(lambda: set(blocks) <= view.states.get(b.base_url[7:], _EMPTY).blocks),
        "the router to see b's prefix",
    )
    before_a, before_b = served(a), served(b)
    with httpx.Client(base_url=router.url, timeout=120) as client:
        for turn in range(6):
            # The precondition, stated: the router sees both replicas idle (a poll taken during the
            # previous turn is corrected by the router's own in-flight count, see picker.estimate).
            poll_until(lambda: router.call(lambda: sees_idle(view)), "the router to see both idle")
            reply = client.post("/v1/chat/completions", json=chat(system, f"turn {turn}"))
            assert reply.status_code == 200
    assert served(b) - before_b == 6 and served(a) == before_a


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/messages",
            {
                "model": MODEL,
                "system": "Anthropic style. " * 40,
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 2,
            },
        ),
        ("/responses", {"model": MODEL, "input": "A responses prompt. " * 40, "max_output_tokens": 16}),
        ("/completions", {"model": MODEL, "prompt": "A plain completion. " * 40, "max_tokens": 2}),
    ],
)
def test_every_generating_path_publishes_the_prefix_the_router_computes(
    replicas: list[RuntimeServer], path: str, body: dict[str, Any]
) -> None:
    a = replicas[0]
    reply = httpx.post(f"{a.api_url}{path}", json=body, timeout=120)
    assert reply.status_code == 200
    blocks = request_blocks(body)
    assert len(blocks) >= 2 and set(blocks) <= set(load(a)["blocks"])


def sees_idle(view: LoadPicker) -> bool:
    for endpoint in view.table.models[MODEL].ready_endpoints:
        state = view.states.get(endpoint.address)
        if state is None or estimate(endpoint, state)[0] != 0:
            return False
    return True


def test_a_replica_with_a_deep_queue_is_avoided(replicas: list[RuntimeServer], router: ThreadServer) -> None:
    a, b = replicas

    async def scenario() -> None:
        async with httpx.AsyncClient(base_url=b.api_url, timeout=300) as direct:
            # b's only slot streams until its client goes away or the context is full; three long
            # requests queue behind it, so b stays busy for as long as the test runs on this machine.
            holder = direct.stream(
                "POST", "/completions", json={"model": MODEL, "prompt": "hold", "stream": True}
            )
            stream = await holder.__aenter__()
            long = {"model": MODEL, "max_tokens": 30000}
            queued = [
                asyncio.create_task(direct.post("/completions", json={**long, "prompt": f"q{i}"}))
                for i in range(3)
            ]
            try:
                await anext(stream.aiter_lines())
                await wait_until(lambda: load(b)["waiting"] >= 2, "requests queued on b")
                view = picker(router)
                address = b.base_url[7:]
                await wait_until(
                    lambda: router.call(lambda: view.states.get(address, _EMPTY).waiting) >= 2,
                    "the router to see b's queue",
                )
                before_a = served(a)
                async with httpx.AsyncClient(base_url=router.url, timeout=120) as client:
                    for i in range(6):
                        body = {"model": MODEL, "prompt": f"routed {i}", "max_tokens": 2}
                        reply = await client.post("/v1/completions", json=body)
                        assert reply.status_code == 200
                assert served(a) - before_a == 6
                # b was busy throughout: its slot is still taken (a request ending hands it on at once).
                assert load(b)["running"] == 1
            finally:
                for task in queued:
                    task.cancel()
                await asyncio.gather(*queued, return_exceptions=True)
                await holder.__aexit__(None, None, None)
            await wait_until(lambda: load(b)["running"] == 0, "b's generations to be cancelled")

    asyncio.run(scenario())


class FailingLoad:
    """A runtime (fake) whose load endpoint answers 500: an older runtime, or one that is failing."""

    def __init__(self) -> None:
        self.runtime = FakeRuntime()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/v1/internal/load":
            await send({"type": "http.response.start", "status": 500, "headers": []})
            await send({"type": "http.response.body", "body": b"no load here"})
            return
        await self.runtime(scope, receive, send)


def test_a_replica_whose_load_endpoint_fails_still_gets_traffic(replicas: list[RuntimeServer]) -> None:
    a = replicas[0]
    failing = FailingLoad()
    b = ThreadServer(failing).start()
    router = load_aware_router([a.base_url[7:], b.address])
    try:
        view = picker(router)
        poll_until(
            lambda: router.call(
                lambda: view.failures.get(b.address, 0) >= 1 and a.base_url[7:] in view.states
            ),
            "a polled and b's poll failed",
        )
        before_a = served(a)
        with httpx.Client(base_url=router.url, timeout=120) as client:
            for i in range(30):
                reply = client.post("/v1/chat/completions", json=chat("short", f"question {i}"))
                assert reply.status_code == 200
        # Both idle, so the choice is a coin toss each time: b (scored by its in-flight count, zero) is
        # as cheap as a. P(one of them gets none of 30) = 2^-29.
        assert len(failing.runtime.requests) >= 1 and served(a) - before_a >= 1
        assert len(failing.runtime.requests) + served(a) - before_a == 30
    finally:
        router.stop()
        b.stop()


_EMPTY = LoadState()
