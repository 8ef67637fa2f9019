"""The runtime's SSE response: its body's cleanup runs even when the client is gone before the body
started (that cleanup frees the request's admission slot)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from localmodel_runtime.server.streaming import EventStream


async def test_a_client_gone_at_once_still_runs_the_bodys_cleanup() -> None:
    cleaned = asyncio.Event()

    async def body() -> AsyncGenerator[bytes, None]:
        try:
            yield b"data: 1\n\n"
            await asyncio.sleep(3600)  # a generation that would go on
            yield b"data: 2\n\n"
        finally:
            cleaned.set()

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        await asyncio.sleep(0.01)  # a slow socket: the disconnect is seen first
        sent.append(message)

    await asyncio.wait_for(EventStream(body())({"type": "http"}, receive, send), 5)
    assert cleaned.is_set()
