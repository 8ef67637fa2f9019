"""A small pooled HTTP/1.1 client for the runtime pods, on asyncio protocols and httptools.

Why not httpx or aiohttp: the router's cost per request is dominated by its HTTP client, and a
protocol that hands each received chunk straight to the waiting proxy (no stream reader, no
per-chunk task, no header objects) measured several times cheaper — see bench/router_bench.py and
the router's notes. It speaks only what the runtimes speak: one request at a time per connection,
Content-Length request bodies, Content-Length / chunked / until-close response bodies.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Literal, cast

import httptools

from localmodel_router.errors import RouterException

FailureKind = Literal[
    "connect", "connect_timeout", "first_byte_timeout", "idle_timeout", "closed", "protocol"
]

# Back-pressure: stop reading from the upstream while this much is waiting for a slow client.
_HIGH_WATER = 1 << 20


class UpstreamError(RouterException):
    """The upstream failed; `kind` says how, `before_response` whether no status line had arrived
    (so nothing was sent to the client and the request may go to another endpoint)."""

    def __init__(self, kind: FailureKind, message: str, before_response: bool) -> None:
        super().__init__(message)
        self.kind = kind
        self.before_response = before_response


def _expire(future: asyncio.Future[Any], error: UpstreamError) -> None:
    if not future.done():
        future.set_exception(error)


class Response:
    """One upstream response; the body is read chunk by chunk, exactly as it arrives."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_complete",
        "_conn",
        "_error",
        "_paused",
        "_waiter",
        "headers",
        "keep_alive",
        "status",
    )

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = True
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._complete = False
        self._error: UpstreamError | None = None
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None

    @property
    def complete(self) -> bool:
        """The whole body has arrived (it may still be buffered here)."""
        return self._complete

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > _HIGH_WATER and not self._paused:
            self._paused = True
            self._conn.pause_reading()
        self._wake()

    def _finish(self) -> None:
        self._complete = True
        self._wake()

    def _fail(self, error: UpstreamError) -> None:
        if not self._complete:
            self._error = error
            self._wake()

    def take_buffered(self) -> bytes:
        """Everything received and not yet read, without waiting."""
        data = b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0]
        self._chunks.clear()
        self._buffered = 0
        if self._paused:
            self._paused = False
            self._conn.resume_reading()
        return data

    async def read(self, idle_timeout: float) -> bytes:
        """The next piece of body (all that is buffered), or b"" at the end; raises UpstreamError."""
        while True:
            if self._chunks:
                return self.take_buffered()
            if self._complete:
                return b""
            if self._error is not None:
                raise self._error
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiter = waiter
            error = UpstreamError("idle_timeout", f"upstream sent nothing for {idle_timeout:g}s", False)
            timer = loop.call_later(idle_timeout, _expire, waiter, error)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None

    async def read_all(self, idle_timeout: float, limit: int = 1 << 24) -> bytes:
        parts: list[bytes] = []
        size = 0
        while chunk := await self.read(idle_timeout):
            parts.append(chunk)
            size += len(chunk)
            if size > limit:
                raise UpstreamError("protocol", "upstream body too large", False)
        return b"".join(parts)

    def release(self) -> None:
        """Done with this response: keep the connection for reuse when that is safe, else close it."""
        conn = self._conn
        if self._complete and self._error is None and self.keep_alive and not self._chunks:
            if self._paused:
                conn.resume_reading()
            conn.finish()
        else:
            conn.close()


class _Connection(asyncio.Protocol):
    def __init__(self, pool: Pool, key: tuple[str, int]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.response: Response | None = None
        self.head: asyncio.Future[Response] | None = None
        self.received = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have the same methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received = True
        if self.response is None:
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(
                UpstreamError("protocol", f"invalid HTTP from upstream: {exc}", not self.response.status)
            )
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        response = self.response
        if response is not None and not response.complete:
            # A body with neither a length nor chunks ends with the connection.
            until_close = response.header(b"content-length") is None and not response.header(
                b"transfer-encoding"
            )
            if response.status and until_close:
                response._finish()
                response.keep_alive = False
            else:
                before = response.status == 0
                self._fail(UpstreamError("closed", "upstream closed the connection", before))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.response is not None
        self.response.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        response = self.response
        assert response is not None
        response.status = self.parser.get_status_code()
        response.keep_alive = self.parser.should_keep_alive()
        if self.head is not None and not self.head.done():
            self.head.set_result(response)

    def on_body(self, body: bytes) -> None:
        assert self.response is not None
        self.response._feed(body)

    def on_message_complete(self) -> None:
        assert self.response is not None
        self.response._finish()

    # ours
    def _fail(self, error: UpstreamError) -> None:
        if self.head is not None and not self.head.done():
            self.head.set_exception(error)
        if self.response is not None:
            self.response._fail(error)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pool.forget(self)
            if self.transport is not None:
                self.transport.close()

    def finish(self) -> None:
        self.response = None
        self.head = None
        self.received = False
        if not self.closed:
            self.pool.put(self)

    async def send(self, request: bytes, first_byte_timeout: float) -> Response:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        response = Response(self)
        self.response = response
        head: asyncio.Future[Response] = loop.create_future()
        self.head = head
        self.transport.write(request)
        error = UpstreamError(
            "first_byte_timeout", f"upstream did not answer in {first_byte_timeout:g}s", True
        )
        timer = loop.call_later(first_byte_timeout, _expire, head, error)
        try:
            return await head
        finally:
            timer.cancel()


class Pool:
    """Idle keep-alive connections per (host, port)."""

    def __init__(self, connect_timeout: float = 5.0, max_idle_per_endpoint: int = 512) -> None:
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle_per_endpoint
        self._idle: dict[tuple[str, int], list[_Connection]] = {}

    def put(self, conn: _Connection) -> None:
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) >= self.max_idle:
            conn.close()
        else:
            idle.append(conn)

    def forget(self, conn: _Connection) -> None:
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)
            if not idle:
                del self._idle[conn.key]

    def drop(self, host: str, port: int) -> None:
        """Close the idle connections to an endpoint that went away (its pod, or its model)."""
        for conn in list(self._idle.pop((host, port), ())):
            conn.close()

    async def _connect(self, key: tuple[str, int]) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, protocol = await loop.create_connection(lambda: _Connection(self, key), key[0], key[1])
        except TimeoutError:
            raise UpstreamError(
                "connect_timeout",
                f"connecting to {key[0]}:{key[1]} took over {self.connect_timeout:g}s",
                True,
            ) from None
        except OSError as exc:
            raise UpstreamError("connect", f"cannot connect to {key[0]}:{key[1]}: {exc}", True) from exc
        return protocol

    async def request(self, host: str, port: int, request: bytes, first_byte_timeout: float) -> Response:
        """Send one complete request (head and body) and wait for the response head."""
        key = (host, port)
        idle = self._idle.get(key)
        conn = idle.pop() if idle else None
        if idle is not None and not idle:
            del self._idle[key]
        if conn is not None:
            try:
                return await conn.send(request, first_byte_timeout)
            except UpstreamError as exc:
                conn.close()
                # A kept-alive connection the server closed as we wrote: nothing was processed, so a
                # fresh connection is the same attempt, not a retry (as httpx and urllib3 do).
                if exc.kind != "closed" or conn.received:
                    raise
            except BaseException:
                conn.close()
                raise
        conn = await self._connect(key)
        try:
            return await conn.send(request, first_byte_timeout)
        except BaseException:
            conn.close()
            raise

    def close(self) -> None:
        for idle in list(self._idle.values()):
            for conn in list(idle):
                conn.close()
        self._idle.clear()
