"""The router restarted under a client's stream: a real `localmodel-router` process (local table) in
front of a real runtime serving the tiny generated model.

* Killed (SIGKILL: the OOM killer, a lost node): the client's stream fails at once with a transport
  error, never a hang, and the runtime stops generating for the connection that went with it.
* Stopped (SIGTERM: the kubelet, after the preStop sleep): the router takes no new connection but lets
  the stream in flight finish, whole, before it exits. A stream still open when its `--graceful-shutdown`
  bound passes ends with an error event, so the SIGKILL at the end of the pod's grace period is never
  the first a client hears of it.
* Either way a router started again on the same port answers.

The runtime is paused (SIGSTOP) while the router is stopped, so that the stream is in flight at that
moment on any machine, and resumed (SIGCONT) when the test has looked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tests.support.polling import wait_until
from tests.support.router_process import RouterProcess
from tests.support.runtime_server import RuntimeServer, runtime_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CONFIG = {
    "name": "tiny",
    "backend": "llama",
    "context_size": 4096,
    "options": ["parallel:2"],
    "parameters": {"model": "tiny.gguf", "ignore_eos": True},
}
MAX_TOKENS = 1000
"""Long enough that the stream is still generating when the test pauses the runtime after its first
chunk, milliseconds later (the tiny model makes hundreds of tokens a second on a busy machine, a few
thousand on an idle fast one), and short enough to finish quickly."""
RUNNING = 'vllm:num_requests_running{model_name="tiny"}'


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[RuntimeServer]:
    # Without the supervisor: SIGSTOP has to pause the process that serves.
    directory = tmp_path_factory.mktemp("runtime")
    with runtime_server(directory, CONFIG, tiny_gguf.parent, args=["--no-supervisor"]) as running:
        yield running


@pytest.fixture
def router_args(tmp_path: Path, runtime: RuntimeServer) -> list[str]:
    table = tmp_path / "table.yaml"
    table.write_text(yaml.safe_dump({"tiny": [runtime.base_url.removeprefix("http://")]}))
    return ["--local-table", str(table)]


@contextlib.contextmanager
def paused(process: subprocess.Popen[bytes]) -> Iterator[None]:
    os.kill(process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(process.pid, signal.SIGCONT)


@dataclass
class Stream:
    """What a streaming client saw."""

    started: asyncio.Event = field(default_factory=asyncio.Event)
    finish: str | None = None
    tokens: int | None = None
    error: Exception | None = None


async def consume(client: openai.AsyncOpenAI, seen: Stream) -> None:
    """Read one stream into `seen`, then close `client`."""
    try:
        stream = await client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "tell me a long story"}],
            max_tokens=MAX_TOKENS,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                seen.started.set()
            if chunk.choices and chunk.choices[0].finish_reason:
                seen.finish = chunk.choices[0].finish_reason
            if chunk.usage is not None:
                seen.tokens = chunk.usage.completion_tokens
    except Exception as exc:  # an API error event, or the transport's error for a cut connection
        seen.error = exc
    finally:
        seen.started.set()
        await client.close()


async def stream_in_flight(router: RouterProcess) -> tuple[Stream, asyncio.Task[None]]:
    """A stream through `router` that has delivered its first tokens."""
    # The client's own timeout is far above every bound here: a hang shows as the test's timeout.
    client = openai.AsyncOpenAI(base_url=f"{router.url}/v1", api_key="unused", max_retries=0, timeout=240)
    seen = Stream()
    task = asyncio.create_task(consume(client, seen))
    await asyncio.wait_for(seen.started.wait(), 60)
    assert seen.error is None and not task.done(), f"the stream ended before the test began: {seen}"
    return seen, task


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


async def exited(router: RouterProcess, bound: float = 60) -> int:
    return await asyncio.to_thread(router.proc.wait, bound)


async def answers_after_restart(router: RouterProcess, args: list[str], tmp_path: Path) -> None:
    """A router started on the stopped one's port serves a request."""
    again = RouterProcess(args, tmp_path / "router-again.log", port=router.port).wait_ready()
    try:
        async with openai.AsyncOpenAI(
            base_url=f"{again.url}/v1", api_key="unused", max_retries=0, timeout=60
        ) as client:
            reply = await client.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "hello again"}], max_tokens=4
            )
        assert reply.choices[0].finish_reason == "length"
    finally:
        again.stop()


async def test_a_killed_router_fails_the_stream_at_once_and_a_restarted_one_answers(
    runtime: RuntimeServer, router_args: list[str], tmp_path: Path
) -> None:
    router = RouterProcess(router_args, tmp_path / "router.log").wait_ready()
    try:
        seen, task = await stream_in_flight(router)
        with paused(runtime.process):
            router.proc.kill()
            await asyncio.wait_for(task, 60)
        error = seen.error
        assert isinstance(error, openai.APIConnectionError | httpx.TransportError), repr(error)
        assert not isinstance(error, openai.APITimeoutError | httpx.TimeoutException), repr(error)
        # The connection from the router went with it: the runtime stops generating.
        await wait_until(lambda: runtime.metric(RUNNING) == 0, "the runtime to stop the orphaned stream", 60)
        await answers_after_restart(router, router_args, tmp_path)
    finally:
        router.stop()


async def test_a_stopped_router_takes_no_new_connection_and_lets_the_stream_finish(
    runtime: RuntimeServer, router_args: list[str], tmp_path: Path
) -> None:
    router = RouterProcess(router_args, tmp_path / "router.log").wait_ready()
    try:
        seen, task = await stream_in_flight(router)
        with paused(runtime.process):
            router.proc.terminate()
            await wait_until(lambda: refused(router.port), "the stopping router to close its listener", 30)
            # The stream cannot have moved on: the router waits for it rather than exiting.
            assert router.proc.poll() is None, router.output()
            assert not task.done(), seen
        await asyncio.wait_for(task, 120)
        assert seen.error is None, repr(seen.error)
        assert (seen.finish, seen.tokens) == ("length", MAX_TOKENS)
        code = await exited(router)
        assert code in (0, -signal.SIGTERM), router.output()  # uvicorn re-raises the SIGTERM it handled
        await answers_after_restart(router, router_args, tmp_path)
    finally:
        router.stop()


async def test_a_stream_outlasting_the_graceful_shutdown_ends_with_an_error_event(
    runtime: RuntimeServer, router_args: list[str], tmp_path: Path
) -> None:
    router = RouterProcess([*router_args, "--graceful-shutdown", "1"], tmp_path / "router.log").wait_ready()
    try:
        seen, task = await stream_in_flight(router)
        with paused(runtime.process):
            router.proc.terminate()
            await asyncio.wait_for(task, 60)
            error = seen.error
            # An error event in a well-formed stream, which the SDK raises as an APIError of its own.
            assert isinstance(error, openai.APIError), repr(error)
            assert not isinstance(error, openai.APIConnectionError), repr(error)
            assert "shutting down" in str(error), repr(error)
            await exited(router)
        await wait_until(lambda: runtime.metric(RUNNING) == 0, "the runtime to stop the abandoned stream", 60)
        await answers_after_restart(router, router_args, tmp_path)
    finally:
        router.stop()
