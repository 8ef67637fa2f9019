"""The router's overload bounds, on the uvicorn configuration the CLI runs (serving.py): deadlines for a
request's headers and body (408), a bound on connections (503) and on requests waiting for a cold start
or an automatic setup (503), all answered in OpenAI's shape; and its `/openapi.json`.

No timing assertions: the deadlines are set short so that the paths they guard run at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from localmodel_router.app import RouterApp
from localmodel_router.autosetup import AutoSetup, AutoSetupSettings
from localmodel_router.openapi import router_document
from localmodel_router.serving import uvicorn_config
from localmodel_router.settings import RouterSettings
from localmodel_router.table import ModelSettings, ModelTable
from tests.support.polling import poll_until
from tests.support.router_fixtures import FakeRuntime, ThreadServer


class BoundedServer(ThreadServer):
    """The router as the CLI serves it (its protocol and bounds), in a thread."""

    def __init__(self, app: RouterApp) -> None:
        super().__init__(app)
        config = uvicorn_config(app, app.settings, "127.0.0.1", self.port, loop="asyncio")
        self.server = uvicorn.Server(config)


@pytest.fixture
def runtime() -> Iterator[ThreadServer]:
    server = ThreadServer(FakeRuntime()).start()
    yield server
    server.stop()


@contextlib.contextmanager
def bounded_router(
    settings: RouterSettings, models: dict[str, list[str]], autosetup: Any = None
) -> Iterator[tuple[RouterApp, BoundedServer]]:
    table = ModelTable()
    for name, addresses in models.items():
        table.upsert_model(name, ModelSettings())
        table.set_endpoints(name, [(a, True) for a in addresses])
    app = RouterApp(table, None, settings, autosetup=autosetup)
    server = BoundedServer(app).start()
    try:
        yield app, server
    finally:
        server.stop()


def raw_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read until the server closes; (status, headers, body)."""
    sock.settimeout(20)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), headers, body


def assert_openai_error(body: bytes, code: str) -> None:
    error = orjson.loads(body)["error"]
    assert error["code"] == code and error["message"] and "type" in error and "param" in error


def test_slow_headers_get_408_and_the_connection_is_closed(runtime: ThreadServer) -> None:
    settings = RouterSettings(header_timeout=0.3)
    with bounded_router(settings, {"m": [runtime.address]}) as (_, router):
        with socket.create_connection(("127.0.0.1", router.port)) as silent:
            status, headers, body = raw_answer(silent)  # connected, never sent a byte
        assert status == 408 and headers["connection"] == "close"
        assert_openai_error(body, "request_timeout")
        with socket.create_connection(("127.0.0.1", router.port)) as trickle:
            trickle.sendall(b"POST /v1/completions HTTP/1.1\r\nhost: x\r\n")
            status, _, body = raw_answer(trickle)
        assert status == 408
        assert_openai_error(body, "request_timeout")
        # A kept-alive connection gets the same deadline for its next request's headers.
        with socket.create_connection(("127.0.0.1", router.port)) as kept:
            kept.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\nGET /hea")
            kept.settimeout(20)
            data = b""
            while chunk := kept.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 408" in data
        # Normal requests are untouched.
        normal = httpx.post(router.url + "/v1/completions", json={"model": "m", "prompt": "x"})
        assert normal.status_code == 200


def test_a_slow_body_gets_408(runtime: ThreadServer) -> None:
    settings = RouterSettings(body_timeout=0.3)
    with bounded_router(settings, {"m": [runtime.address]}) as (_, router):
        with socket.create_connection(("127.0.0.1", router.port)) as slow:
            slow.sendall(
                b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                b'content-length: 100\r\n\r\n{"model": '
            )
            status, _, body = raw_answer(slow)
        assert status == 408
        assert_openai_error(body, "request_timeout")
        fake = runtime.server.config.app
        assert fake.requests == []  # nothing half-read was passed on


def test_past_the_connection_bound_requests_get_503_with_retry_after(runtime: ThreadServer) -> None:
    settings = RouterSettings(max_connections=3)
    with bounded_router(settings, {"m": [runtime.address]}) as (_, router):
        held = [socket.create_connection(("127.0.0.1", router.port)) for _ in range(3)]
        with httpx.Client() as client:
            poll_until(lambda: router.call(lambda: len(router.server.server_state.connections)) == 3, "3")
            refused = client.post(router.url + "/v1/completions", json={"model": "m", "prompt": "x"})
            assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
            assert_openai_error(refused.content, "router_overloaded")
            for sock in held:
                sock.close()
            poll_until(lambda: router.call(lambda: len(router.server.server_state.connections)) <= 1, "1")
            served = client.post(router.url + "/v1/completions", json={"model": "m", "prompt": "x"})
            assert served.status_code == 200


class BlockingStore:
    """An API server whose LocalModel creation waits until released (a slow admission webhook)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((namespace, name))

    async def count_auto_created(self, namespace: str) -> int:
        return 0

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        await asyncio.to_thread(self.release.wait, 60)
        meta = manifest["metadata"]
        self.objects[(meta["namespace"], meta["name"])] = manifest
        return manifest

    async def event(self, obj: dict[str, Any], reason: str, message: str) -> None:
        return None


def test_waits_for_cold_starts_and_automatic_setup_share_one_bound(runtime: ThreadServer) -> None:
    store = BlockingStore()
    auto = AutoSetupSettings(enabled=True, namespace="models", repositories=("TheBloke/*",), wait=0.5)
    table_settings = RouterSettings(max_waiting=1, cold_start_timeout=30)
    with (
        bounded_router(table_settings, {"down": [], "up": [runtime.address]}) as (app, router),
        httpx.Client(timeout=60) as client,
    ):
        app.autosetup = AutoSetup(auto, app.table, store, app.settings.retry_after)
        # One request waits while its model is set up ...
        waiting = threading.Thread(
            target=client.post,
            args=(router.url + "/v1/completions",),
            kwargs={"json": {"model": "TheBloke/Tiny-GGUF/tiny.Q4_K_M.gguf", "prompt": "x"}},
            daemon=True,
        )
        waiting.start()
        poll_until(lambda: app.forwarder.waiting == 1, "the automatic setup to wait")
        # ... so a request for a model with no ready endpoint finds the bound taken.
        refused = client.post(router.url + "/v1/completions", json={"model": "down", "prompt": "x"})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
        assert "already waiting" in refused.json()["error"]["message"]
        # Ready models are not waited for and pass.
        ready = client.post(router.url + "/v1/completions", json={"model": "up", "prompt": "x"})
        assert ready.status_code == 200
        store.release.set()
        poll_until(lambda: app.forwarder.waiting == 0, "the setup to stop waiting")
        waiting.join(60)


def test_openapi_document_is_the_runtime_models_with_the_router_statuses(runtime: ThreadServer) -> None:
    with bounded_router(RouterSettings(), {"m": [runtime.address]}) as (_, router):
        served = httpx.get(router.url + "/openapi.json").json()
    assert served == json.loads(json.dumps(router_document()))
    chat = served["paths"]["/v1/chat/completions"]["post"]
    assert {"400", "401", "408", "429", "502", "503", "504"} <= set(chat["responses"])
    assert chat["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ChatCompletionRequest"
    )
