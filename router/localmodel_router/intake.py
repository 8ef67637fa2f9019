"""Reading a client's request: the body within its size cap and deadline, and a watch that turns the
client going away into a cancellation of the work done for it."""

from __future__ import annotations

import asyncio
from types import TracebackType

from localmodel_router.errors import RouterError
from localmodel_router.types import Receive
from localmodel_runtime.client_gone import ClientGone


class DisconnectWatch:
    """While entered, a disconnect of the client cancels the task that entered it (cheaper than running
    the work in a task of its own); that cancellation leaves the block as ClientGone, any other stays a
    cancellation."""

    __slots__ = ("done", "fired", "receive", "task", "watcher")

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.done = False
        self.fired = False

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        self.watcher = asyncio.get_running_loop().create_task(self._run())

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.done = True
        self.watcher.cancel()
        if exc_type is not None and issubclass(exc_type, asyncio.CancelledError) and self.fired:
            self.task.uncancel()
            raise ClientGone from None

    async def _run(self) -> None:
        message = await self.receive()
        if message["type"] == "http.disconnect" and not self.done:
            self.fired = True
            self.task.cancel()


async def read_body(receive: Receive, limit: int, deadline: float) -> bytes:
    """The whole body; 413 past `limit` bytes, 408 when it takes more than `deadline` seconds (a slow
    or stalled client must not hold its request, and the memory read so far, without bound)."""
    try:
        async with asyncio.timeout(deadline):
            return await _read_body(receive, limit)
    except TimeoutError:
        # The rest of the body may still come: the connection is closed rather than read to its end.
        message = f"the request body did not arrive within {deadline:g}s"
        raise RouterError(408, message, "request_timeout", None, [(b"connection", b"close")]) from None


async def _read_body(receive: Receive, limit: int) -> bytes:
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        if len(body) > limit:
            raise too_large(limit)
        return body
    parts = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        parts.append(chunk)
        if not message.get("more_body"):
            return b"".join(parts)


def too_large(limit: int) -> RouterError:
    return RouterError(413, f"the request body exceeds the limit of {limit} bytes", "request_too_large")
