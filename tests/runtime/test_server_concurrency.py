"""Concurrency through a real server: streams run together and are never cut, a full queue answers 429
with Retry-After, and a client that goes away frees its slot."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.polling import wait_until
from tests.support.runtime_server import RuntimeServer, runtime_server


def config(parallel: int, context: int) -> dict[str, Any]:
    return {
        "name": "tiny",
        "backend": "llama",
        "context_size": context,
        "options": [f"parallel:{parallel}"],
        "parameters": {"model": "tiny.gguf", "ignore_eos": True},
    }


@pytest.fixture(scope="module")
def four(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[RuntimeServer]:
    with runtime_server(tmp_path_factory.mktemp("four"), config(4, 1024), tiny_gguf.parent) as running:
        yield running


@pytest.fixture(scope="module")
def one(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[RuntimeServer]:
    args = ["--max-waiting", "1"]
    # A long context keeps an uncancelled generation going for seconds, even on the tiny model.
    with runtime_server(
        tmp_path_factory.mktemp("one"), config(1, 32768), tiny_gguf.parent, args=args
    ) as running:
        yield running


def metric(server: RuntimeServer, name: str) -> float:
    for line in httpx.get(f"{server.base_url}/metrics").text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} is not exported")


async def test_concurrent_streams_all_complete(four: RuntimeServer) -> None:
    client = four.async_client()
    tokens = 64

    async def stream(i: int) -> tuple[str, str | None, int]:
        chunks = await client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": f"stream number {i}"}],
            max_tokens=tokens,
            stream=True,
            stream_options={"include_usage": True},
            seed=i,
        )
        text, finish, used = "", None, 0
        async for chunk in chunks:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
            if chunk.usage:
                used = chunk.usage.completion_tokens
        return text, finish, used

    results = await asyncio.gather(*(stream(i) for i in range(6)))  # more streams than slots
    await client.close()
    assert all(finish == "length" and used == tokens for _, finish, used in results)
    assert metric(four, "vllm:num_requests_running") == 0


async def test_full_queue_is_429_and_disconnects_free_slots(one: RuntimeServer) -> None:
    client = one.async_client()
    # A holds the only slot; it streams until the context is full unless its client goes away.
    holder = await client.completions.create(model="tiny", prompt="hold", stream=True)
    first = await anext(aiter(holder))
    assert first.choices[0].text is not None
    # B waits in the queue (max-waiting 1).
    waiter = asyncio.create_task(client.completions.create(model="tiny", prompt="wait", max_tokens=4))
    await wait_until(lambda: metric(one, "vllm:num_requests_waiting") == 1, "B to queue")
    # C finds the queue full.
    with pytest.raises(openai.RateLimitError) as raised:
        await client.completions.create(model="tiny", prompt="refused", max_tokens=4)
    assert raised.value.response.headers["retry-after"] == "1"
    assert raised.value.code == "queue_full"
    # A's client goes away: its generation stops and B gets the slot.
    await holder.close()
    reply = await asyncio.wait_for(waiter, 60)
    assert reply.choices[0].finish_reason == "length"
    await wait_until(lambda: metric(one, "vllm:num_requests_running") == 0, "the slots to be free")
    assert metric(one, "localmodel:requests_rejected_total") == 1
    await client.close()


async def test_non_streaming_disconnect_cancels_the_generation(one: RuntimeServer) -> None:
    aborted = metric_or_zero(one, 'vllm:request_success_total{finished_reason="abort",model_name="tiny"}')
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=0.3)) as http:
        with pytest.raises(httpx.ReadTimeout):
            # Generates until the 32768-token context is full unless cancelled.
            await http.post(f"{one.api_url}/completions", json={"prompt": "long", "max_tokens": 100_000})
    await wait_until(lambda: metric(one, "vllm:num_requests_running") == 0, "the generation to be cancelled")
    assert (
        metric_or_zero(one, 'vllm:request_success_total{finished_reason="abort",model_name="tiny"}') > aborted
    )
    reply = one.client().completions.create(model="tiny", prompt="after", max_tokens=3)
    assert reply.usage is not None and reply.usage.completion_tokens == 3


def metric_or_zero(server: RuntimeServer, series: str) -> float:
    for line in httpx.get(f"{server.base_url}/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_choices_share_the_slots_and_a_disconnect_stops_them_all(four: RuntimeServer) -> None:
    """n=3 streamed choices run side by side in the batch; when the client goes away every one of them
    stops and frees its slot."""
    series = 'vllm:request_success_total{finished_reason="abort",model_name="tiny"}'
    aborted = metric_or_zero(four, series)
    client = four.async_client()
    stream = await client.completions.create(
        model="tiny", prompt="many", n=3, stream=True, max_tokens=100_000
    )
    seen: set[int] = set()
    async for chunk in stream:
        seen.update(c.index for c in chunk.choices)
        if seen == {0, 1, 2}:
            break
    assert metric(four, "vllm:num_requests_running") == 3  # each choice holds a slot
    await stream.close()
    await wait_until(lambda: metric(four, "vllm:num_requests_running") == 0, "every choice to stop")
    assert metric_or_zero(four, series) == aborted + 3  # cut short, not run to the end of the context
    await client.close()


@pytest.fixture(scope="module")
def one_embedding(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[RuntimeServer]:
    """One slot, no queue, embeddings on: a second request of any kind while the slot is held is 429."""
    embedding = {**config(1, 32768), "embeddings": True}
    with runtime_server(
        tmp_path_factory.mktemp("one-embedding"), embedding, tiny_gguf.parent, args=["--max-waiting", "0"]
    ) as running:
        yield running


async def test_embeddings_go_through_admission_too(one_embedding: RuntimeServer) -> None:
    client = one_embedding.async_client()
    holder = await client.completions.create(model="tiny", prompt="hold", stream=True)
    await anext(aiter(holder))  # the only slot is held while this streams
    with pytest.raises(openai.RateLimitError) as raised:
        await client.embeddings.create(model="tiny", input=["refused while the slot is busy"])
    assert raised.value.response.headers["retry-after"] == "1"
    assert raised.value.code == "queue_full"
    await holder.close()
    await wait_until(lambda: metric(one_embedding, "vllm:num_requests_running") == 0, "the slot to be free")
    vectors = await client.embeddings.create(model="tiny", input=["served once the slot is free"])
    assert len(vectors.data) == 1 and len(vectors.data[0].embedding) > 0
    assert vectors.usage.prompt_tokens > 0
    await client.close()


async def test_kv_cache_usage_is_exported_for_endpoint_pickers(one: RuntimeServer) -> None:
    # The Gateway API Inference Extension's endpoint pickers read vLLM's gauge names.
    await wait_until(lambda: metric(one, "vllm:num_requests_running") == 0, "an idle server")
    assert metric(one, "vllm:kv_cache_usage_perc") == 0
    client = one.async_client()
    holder = await client.completions.create(model="tiny", prompt="hold the cache", stream=True)
    await anext(aiter(holder))
    await wait_until(lambda: metric(one, "vllm:kv_cache_usage_perc") > 0, "the held cells to show")
    assert metric(one, "vllm:kv_cache_usage_perc") <= 1
    await holder.close()
    await wait_until(lambda: metric(one, "vllm:kv_cache_usage_perc") == 0, "the cells to be released")
    await client.close()
