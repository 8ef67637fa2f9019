"""The app in process under a real uvicorn: live before the model is loaded, ready only after."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from localmodel_runtime.backends.llama import LlamaBackend
from localmodel_runtime.config import ModelConfig
from localmodel_runtime.server import create_app
from tests.support.net import free_port


class GatedLlama(LlamaBackend):
    """The llama backend, loading only once the test opens the gate (a slow load, made deterministic)."""

    def __init__(self, config: ModelConfig, models_dir: Path, gate: threading.Event) -> None:
        super().__init__(config, models_dir)
        self.gate = gate

    async def load(self) -> None:
        await asyncio.to_thread(self.gate.wait, 120)
        await super().load()


@pytest.fixture
def gated(tiny_gguf: Path) -> Iterator[tuple[str, threading.Event]]:
    config = ModelConfig.model_validate(
        {"name": "tiny", "backend": "llama", "context_size": 256, "parameters": {"model": tiny_gguf.name}}
    )
    gate = threading.Event()
    app = create_app(config, tiny_gguf.parent, backend=GatedLlama(config, tiny_gguf.parent, gate))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", gate
    finally:
        gate.set()
        server.should_exit = True
        thread.join(30)


def test_live_but_not_ready_until_loaded(gated: tuple[str, threading.Event]) -> None:
    url, gate = gated
    assert httpx.get(f"{url}/healthz").status_code == 200
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 503 and ready.json()["error"]["code"] == "model_not_ready"
    early = httpx.post(f"{url}/v1/completions", json={"prompt": "x", "max_tokens": 2})
    assert early.status_code == 503 and "retry-after" in early.headers
    assert httpx.get(f"{url}/v1/models").json()["data"][0]["id"] == "tiny"
    assert "vllm:num_requests_running" in httpx.get(f"{url}/metrics").text
    gate.set()
    deadline = time.monotonic() + 60
    while httpx.get(f"{url}/readyz").status_code != 200:
        assert time.monotonic() < deadline, "never became ready"
        time.sleep(0.02)
    done = httpx.post(f"{url}/v1/completions", json={"prompt": "x", "max_tokens": 2}, timeout=30)
    assert done.status_code == 200 and done.json()["usage"]["completion_tokens"] <= 2
