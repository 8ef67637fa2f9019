"""The router in front of real runtimes when they are busy or sent odd input: a runtime's 429 is tried
once on another ready replica before the first byte, else reaches the client with its `Retry-After`; a
content part whose text is null is routed (and judged by the runtime), never a plain-text 500."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from localmodel_router.app import RouterApp
from localmodel_router.balance import HashRing, prefix_key
from localmodel_router.settings import RouterSettings
from localmodel_router.table import ModelSettings, ModelTable
from tests.support.model_configs import one_slot_config
from tests.support.router_fixtures import ThreadServer
from tests.support.runtime_server import RuntimeServer, runtime_servers


@pytest.fixture(scope="module")
def runtimes(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[list[RuntimeServer]]:
    # One slot and no queue: while a stream holds the slot, any other request is 429 at once. The long
    # context keeps an unread stream generating for seconds.
    args = ["--max-waiting", "0"]
    with runtime_servers(tmp_path_factory, 2, one_slot_config(), tiny_gguf.parent, args=args) as servers:
        yield servers


def address(server: RuntimeServer) -> str:
    return server.base_url.removeprefix("http://")


@pytest.fixture
def router_for() -> Iterator[Any]:
    started: list[ThreadServer] = []

    def start(addresses: list[str], strategy: str = "leastInFlight") -> tuple[RouterApp, ThreadServer]:
        table = ModelTable()
        table.upsert_model("tiny", ModelSettings(strategy=strategy))  # type: ignore[arg-type]
        table.set_endpoints("tiny", [(a, True) for a in addresses])
        app = RouterApp(table, None, RouterSettings())
        server = ThreadServer(app).start()
        started.append(server)
        return app, server

    yield start
    for server in started:
        server.stop()


async def hold(server: RuntimeServer) -> AsyncIterator[Any]:
    """Take the runtime's only slot (directly, so the router does not know) until closed."""
    client = server.async_client()
    stream = await client.completions.create(model="tiny", prompt="hold", stream=True)
    await anext(aiter(stream))
    return stream


def prompt_owned_by(owner: str, addresses: list[str]) -> str:
    """A prompt that prefix affinity sends to `owner` first (the ring is a pure function of the
    addresses), so the test knows which replica the router tries first."""
    ring = HashRing([_endpoint(a) for a in addresses])
    for index in range(1000):
        prompt = f"prompt number {index}"
        if ring.choose(prefix_key({"prompt": prompt}) or b"").address == owner:
            return prompt
    raise AssertionError("no prompt maps to the owner")


def _endpoint(address_: str) -> Any:
    from localmodel_router.table import Endpoint

    return Endpoint(address_)


def retries(server: ThreadServer) -> float:
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith('localmodel_router_retries_total{model="tiny"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_a_busy_replicas_429_is_retried_on_another(
    runtimes: list[RuntimeServer], router_for: Any
) -> None:
    busy, free = runtimes
    addresses = [address(busy), address(free)]
    _, router = router_for(addresses, "prefixAffinity")
    holder = await hold(busy)
    try:
        prompt = prompt_owned_by(address(busy), addresses)
        client = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key="x", max_retries=0)
        reply = await client.completions.create(model="tiny", prompt=prompt, max_tokens=3)
        await client.close()
    finally:
        await holder.close()
    assert reply.usage is not None and reply.usage.completion_tokens == 3
    assert retries(router) == 1


async def test_a_429_everywhere_reaches_the_client_with_retry_after(
    runtimes: list[RuntimeServer], router_for: Any
) -> None:
    _, alone = router_for([address(runtimes[0])])
    _, both = router_for([address(r) for r in runtimes])
    holders = [await hold(r) for r in runtimes]
    try:
        for router in (alone, both):
            client = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key="x", max_retries=0)
            with pytest.raises(openai.RateLimitError) as raised:
                await client.completions.create(model="tiny", prompt="refused", max_tokens=3)
            await client.close()
            assert raised.value.response.headers["retry-after"] == "1"
            assert raised.value.code == "queue_full"
    finally:
        for holder in holders:
            await holder.close()
    assert retries(alone) == 0 and retries(both) == 1


@pytest.mark.parametrize("strategy", ["prefixAffinity", "leastInFlight"])
async def test_a_null_text_part_is_routed_and_answered_in_openai_shape(
    runtimes: list[RuntimeServer], router_for: Any, strategy: str
) -> None:
    _, router = router_for([address(r) for r in runtimes], strategy)
    body = {
        "model": "tiny",
        "max_tokens": 2,
        "messages": [{"role": "user", "content": [{"type": "text", "text": None}, {"type": "text"}]}],
    }
    async with httpx.AsyncClient(timeout=60) as http:
        for _ in range(20):  # wait out a slot still held by an earlier test's closed stream
            answer = await http.post(router.url + "/v1/chat/completions", json=body)
            if answer.status_code != 429:
                break
            await asyncio.sleep(0.1)
        direct = await http.post(runtimes[0].api_url + "/chat/completions", json=body)
    # The router passes the request on; the runtime's verdict (whatever it is) comes back unchanged.
    assert answer.status_code == direct.status_code, answer.text
    assert answer.headers["content-type"] == "application/json"
    if answer.status_code == 200:
        assert answer.json()["object"] == "chat.completion"
    else:
        assert answer.json()["error"]["message"]


def test_a_bug_in_the_router_is_an_openai_shaped_500(
    runtimes: list[RuntimeServer], router_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever slips through (here: the affinity key raising, as the null text did), the client gets
    OpenAI's error body, never the server's plain text."""

    def broken(body: dict[str, Any], limit: int = 256) -> bytes:
        raise TypeError("sequence item 0: expected str instance, NoneType found")

    monkeypatch.setattr("localmodel_router.proxy.prefix_key", broken)
    _, router = router_for([address(r) for r in runtimes], "prefixAffinity")
    answer = httpx.post(router.url + "/v1/completions", json={"model": "tiny", "prompt": "x"}, timeout=60)
    assert answer.status_code == 500 and answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]["code"] == "internal_error"
    assert httpx.get(router.url + "/healthz").status_code == 200
