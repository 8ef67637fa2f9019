"""Responses that end when the client leaves: JSON bodies, Server-Sent Events streams, and awaiting
work only while the client is still there (a disconnect cancels it)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable
from typing import Any, TypeVar

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..client_gone import ClientGone

log = logging.getLogger(__name__)

T = TypeVar("T")

DONE = b"data: [DONE]\n\n"
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    # Proxies (nginx) buffer responses unless told not to, which holds tokens back.
    (b"x-accel-buffering", b"no"),
]


def sse(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def sse_response(events: bytes) -> Response:
    """A whole event stream sent at once (an answer known only when complete, replayed as a stream)."""
    headers = {k.decode(): v.decode() for k, v in SSE_HEADERS if k != b"content-type"}
    return Response(events, headers=headers, media_type="text/event-stream")


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def until_disconnected(receive: Receive, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it if the client disconnects first (then raise ClientGone)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        raise ClientGone
    return task.result()


class EventStream(Response):
    """An SSE response whose body stops (and its generation with it) as soon as the client goes away."""

    def __init__(self, body: AsyncGenerator[bytes, None]) -> None:
        super().__init__(status_code=200, media_type="text/event-stream")
        self.body_iterator = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Start the body before anything can cancel it: a generator that never ran skips its `finally`
        # on aclose(), and that `finally` frees the request's slot. Its first chunk needs no waiting.
        try:
            first: bytes | None = await anext(self.body_iterator)
        except StopAsyncIteration:
            first = None

        async def stream() -> None:
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            if first is not None:
                await send({"type": "http.response.body", "body": first, "more_body": True})
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        streaming = asyncio.ensure_future(stream())
        watcher = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((streaming, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if not streaming.done():
                streaming.cancel()
            await asyncio.gather(streaming, watcher, return_exceptions=True)
            await self.body_iterator.aclose()
        exc = None if streaming.cancelled() else streaming.exception()
        if exc is not None and not isinstance(exc, OSError):  # OSError: the client went away mid-write
            log.error("streaming a response failed", exc_info=exc)
