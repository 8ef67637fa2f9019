"""Real servers for the router's runtime tests: uvicorn in a thread on a free loopback port (as
httpx's test suite does), fake runtimes with fault injection, and a raw TCP server that closes
connections without answering."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import openai
import orjson
import uvicorn

from localmodel_router.app import RouterApp
from localmodel_router.auth import ApiKeys
from localmodel_router.settings import RouterSettings
from localmodel_router.table import ModelEntry, ModelSettings, ModelTable
from tests.support.asgi import read_body, serve_lifespan
from tests.support.net import free_port

T = TypeVar("T")


class ThreadServer:
    """uvicorn serving `app` in a thread with its own event loop."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, loop="asyncio", lifespan="on", log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.loop = loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.server.serve())
        finally:
            # Closed, or its self-pipe sockets are left for the garbage collector (a ResourceWarning).
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "test server did not start"
            time.sleep(0.01)
        return self

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the server's loop (the routing table belongs to it) and return its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(_call(fn), self.loop).result(5)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


async def _call(fn: Callable[[], T]) -> T:
    return fn()


@dataclass
class FakeRuntime:
    """A fake runtime pod. `mode` can be changed while it runs:
    ok | fail500 | hang | die_mid_stream | stall_mid_stream."""

    mode: str = "ok"
    events: int = 5
    requests: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    disconnects: int = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        body = await read_body(receive)
        self.paths.append(scope["path"])
        data = orjson.loads(body) if body else {}
        self.requests.append(data)
        if self.mode == "hang":
            # Never answer; record the router closing the connection (its request being cancelled).
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnects += 1
            return
        if self.mode == "fail500":
            await send(
                {"type": "http.response.start", "status": 500, "headers": [(b"content-type", b"text/plain")]}
            )
            await send({"type": "http.response.body", "body": b"backend exploded"})
            return
        if not data.get("stream"):
            payload = orjson.dumps(
                {
                    "id": "cmpl-1",
                    "object": "chat.completion",
                    "created": 1,
                    "model": data.get("model", "m"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "pong"},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
            )
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for index in range(self.events):
            chunk = {
                "id": "cmpl-1",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": data.get("model", "m"),
                "choices": [{"index": 0, "delta": {"content": f"t{index} "}, "finish_reason": None}],
            }
            await send(
                {
                    "type": "http.response.body",
                    "body": b"data: " + orjson.dumps(chunk) + b"\n\n",
                    "more_body": True,
                }
            )
            await asyncio.sleep(0.01)
            if index == 1 and self.mode == "die_mid_stream":
                raise RuntimeError("runtime killed mid-stream (test)")
            if index == 1 and self.mode == "stall_mid_stream":
                # Go silent until the router drops the connection (idle timeout or client gone).
                message = await receive()
                if message["type"] == "http.disconnect":
                    self.disconnects += 1
                return
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


class ClosingServer:
    """Accepts connections, reads the request and closes without a byte of answer."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.accepted = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.settimeout(2)
            with contextlib.suppress(OSError):
                conn.recv(65536)
            conn.close()

    def stop(self) -> None:
        self.sock.close()


def refused_address() -> str:
    """An address where nothing listens."""
    return f"127.0.0.1:{free_port()}"


def serve(app: Any) -> Iterator[ThreadServer]:
    server = ThreadServer(app).start()
    try:
        yield server
    finally:
        server.stop()


def router_server(router: RouterApp) -> ThreadServer:
    return ThreadServer(router).start()


class RecordingScaler:
    """A `Scaler` that records what it was asked to do, for the scale decisions' unit tests."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def scale_up(self, model: ModelEntry) -> None:
        self.calls.append(("up", model.name))

    async def scale_down(self, model: ModelEntry) -> None:
        self.calls.append(("down", model.name))

    async def scale_to(self, model: ModelEntry, replicas: int) -> None:
        self.calls.append((f"to {replicas}", model.name))


@contextlib.contextmanager
def router_in_front(model: str, address: str, keys: set[str] | None = None) -> Iterator[ThreadServer]:
    """A real router whose table sends `model` to the runtime at `address` (what discovery would find),
    with API keys required when `keys` are given."""
    table = ModelTable()
    table.upsert_model(model, ModelSettings())
    table.set_endpoints(model, [(address, True)])
    app = RouterApp(table, None, RouterSettings(), ApiKeys(keys or set()))
    yield from serve(app)


@contextlib.contextmanager
def runtime_or_router(where: str, runtime_url: str, model: str) -> Iterator[str]:
    """The base URL of the runtime itself (`where == "runtime"`), or of a real router in front of it
    that requires the key `test`: the API tests run the same requests both ways."""
    if where == "runtime":
        yield runtime_url
        return
    with router_in_front(model, runtime_url.removeprefix("http://"), keys={"test"}) as router:
        yield router.url


@contextlib.contextmanager
def openai_client(where: str, runtime_url: str, model: str) -> Iterator[openai.OpenAI]:
    """An `openai` client (no retries) of `runtime_or_router(where, runtime_url, model)`."""
    with (
        runtime_or_router(where, runtime_url, model) as url,
        openai.OpenAI(base_url=f"{url}/v1", api_key="test", max_retries=0) as client,
    ):
        yield client
