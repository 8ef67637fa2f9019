"""Forwarding one OpenAI request to an endpoint of its model, and its response back, unbuffered.

Retry rule: a connection failure, a 5xx status or a 429 (that replica's queue is full) before anything
has been sent to the client goes once to another ready endpoint; a 429 that is not retried reaches the
client with its `Retry-After`. After the first byte nothing is retried; a stream that breaks ends
with an SSE `data: {"error": ...}` event, which the OpenAI clients raise as `APIError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import orjson

from localmodel_router.balance import PrefixAffinity, least_in_flight, prefix_key
from localmodel_router.dialects import OPENAI, Dialect
from localmodel_router.errors import RouterError
from localmodel_router.metrics import ModelMetrics
from localmodel_router.picker import LoadPicker
from localmodel_router.scale_to_zero import ScaleToZero
from localmodel_router.settings import RouterSettings
from localmodel_router.table import Endpoint, ModelEntry, ModelTable
from localmodel_router.types import Send
from localmodel_router.upstream import Pool, Response, UpstreamError

_SSE = b"text/event-stream"
_JSON_HEADERS = [(b"content-type", b"application/json")]
_SSE_EXTRA = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
_STATUS_FOR_FAILURE = {"first_byte_timeout": 504, "idle_timeout": 504, "connect_timeout": 502}


def failure_error(exc: UpstreamError) -> RouterError:
    code = "upstream_timeout" if exc.kind.endswith("timeout") else "upstream_unavailable"
    return RouterError(_STATUS_FOR_FAILURE.get(exc.kind, 502), str(exc), code)


class Forwarder:
    def __init__(self, table: ModelTable, pool: Pool, settings: RouterSettings, scale: ScaleToZero) -> None:
        self.table = table
        self.pool = pool
        self.settings = settings
        self.scale = scale
        self.waiting = 0
        self._affinity: dict[str, PrefixAffinity] = {}
        self.picker = LoadPicker(table, pool)

    async def ready_endpoints(self, entry: ModelEntry, metrics: ModelMetrics) -> list[Endpoint]:
        """The model's ready endpoints, waking it from zero and waiting (bounded) when it has none."""
        if entry.ready_endpoints:
            return entry.ready_endpoints
        settings = self.settings
        with self.waiting_slot(f"model {entry.name!r} has no ready endpoint"):
            if self.scale.can_wake(entry) and self.scale.wake(entry):
                metrics.scale_ups.inc()
            found = await self.table.wait_ready(entry.name, settings.cold_start_timeout)
        if found is None or not found.ready_endpoints:
            message = f"model {entry.name!r} has no ready endpoint after {settings.cold_start_timeout:g}s"
            raise RouterError(503, message, "model_not_ready", None, self.retry_after())
        return found.ready_endpoints

    def retry_after(self) -> list[tuple[bytes, bytes]]:
        return [(b"retry-after", str(self.settings.retry_after).encode())]

    @contextlib.contextmanager
    def waiting_slot(self, why: str) -> Iterator[None]:
        """Hold one of the `max_waiting` places of requests that wait (for a cold start or an automatic
        setup); 503 with `Retry-After` when none is left. `why` says what the request would wait for."""
        if self.waiting >= self.settings.max_waiting:
            message = f"{why} and {self.waiting} requests are already waiting; retry later"
            raise RouterError(503, message, "model_not_ready", None, self.retry_after())
        self.waiting += 1
        try:
            yield
        finally:
            self.waiting -= 1

    def forget(self, name: str) -> None:
        self._affinity.pop(name, None)

    def choose(self, entry: ModelEntry, endpoints: list[Endpoint], data: dict[str, Any]) -> Endpoint:
        if entry.settings.strategy == "prefixAffinity":
            affinity = self._affinity.get(entry.name)
            if affinity is None:
                affinity = self._affinity[entry.name] = PrefixAffinity()
            return affinity.choose(endpoints, prefix_key(data))
        if entry.settings.strategy == "loadAware":
            return self.picker.choose(endpoints, data)
        return least_in_flight(endpoints)

    async def forward(
        self,
        send: Send,
        entry: ModelEntry,
        metrics: ModelMetrics,
        data: dict[str, Any],
        head: bytes,
        body: bytes,
        started: float,
        dialect: Dialect = OPENAI,
    ) -> int:
        """Send the request (with the one retry) and relay the response; returns the status sent.

        `head` is the request line and headers without `host` and without the blank line: the
        endpoint is only known here.
        """
        endpoints = await self.ready_endpoints(entry, metrics)
        endpoint = self.choose(entry, endpoints, data)
        token = entry.settings.upstream_token
        if token is not None:  # the runtime answers only the router (runtime tokens)
            head = b"".join((head, b"authorization: Bearer ", token.encode(), b"\r\n"))
        settings = self.settings
        retried = False
        while True:
            attempt = endpoint  # `endpoint` moves on to the retry's; this attempt's counter is this one's
            attempt.in_flight += 1
            try:
                request = b"".join((head, b"host: ", attempt.address.encode(), b"\r\n\r\n", body))
                try:
                    response = await self.pool.request(
                        attempt.host, attempt.port, request, settings.first_byte_timeout
                    )
                except UpstreamError as exc:
                    metrics.upstream_error(exc.kind)
                    other = self._other(entry, attempt)
                    # A first-byte timeout is not retried: the upstream may still be working on it.
                    if retried or other is None or exc.kind == "first_byte_timeout":
                        raise failure_error(exc) from exc
                    retried = True
                    metrics.retries.inc()
                    endpoint = other
                    continue
                try:
                    status = response.status
                    if (status >= 500 or status == 429) and not retried:
                        other = self._other(entry, attempt)
                        if other is not None:
                            metrics.upstream_error("5xx" if status >= 500 else "429")
                            metrics.retries.inc()
                            retried = True
                            endpoint = other
                            continue
                    return await self._relay(send, response, metrics, started, dialect)
                finally:
                    response.release()
            finally:
                attempt.in_flight -= 1

    def _other(self, entry: ModelEntry, failed: Endpoint) -> Endpoint | None:
        others = [e for e in entry.ready_endpoints if e is not failed]
        return least_in_flight(others) if others else None

    async def _relay(
        self, send: Send, response: Response, metrics: ModelMetrics, started: float, dialect: Dialect
    ) -> int:
        status = response.status
        idle = self.settings.idle_timeout
        if status >= 400:
            if status >= 500:
                metrics.upstream_error("5xx")
            try:
                raw = await response.read_all(idle)
            except UpstreamError:
                raw = b""
            payload = dialect.normalise(status, raw)
            headers = [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode())]
            retry_after = response.header(b"retry-after")
            if retry_after is not None:
                headers.append((b"retry-after", retry_after))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
            return status
        content_type = response.header(b"content-type") or b"application/json"
        headers = [(b"content-type", content_type)]
        request_id = response.header(b"x-request-id")
        if request_id is not None:
            headers.append((b"x-request-id", request_id))
        is_sse = content_type.startswith(_SSE)
        if is_sse:
            headers.extend(_SSE_EXTRA)
        if response.complete:
            # Small answers arrive with their head: one write, with a length.
            payload = response.take_buffered()
            headers.append((b"content-length", str(len(payload)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            metrics.ttft.observe(time.perf_counter() - started)
            await send({"type": "http.response.body", "body": payload})
            return status
        if not is_sse:
            length = response.header(b"content-length")
            if length is not None:
                headers.append((b"content-length", length))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        first = True
        tail = b"\n\n"
        while True:
            try:
                chunk = await response.read(idle)
            except UpstreamError as exc:
                metrics.upstream_error(exc.kind)
                if not is_sse:
                    raise  # a body with a length cannot be ended early: the server drops the connection
                event = dialect.stream_error(f"upstream failed mid-stream: {exc}", "upstream_" + exc.kind)
                await send({"type": "http.response.body", "body": _event_after(tail, event)})
                return status
            except asyncio.CancelledError:
                # The client went away (nothing to tell), or the router is stopping and its graceful
                # shutdown bound has passed: a client still reading learns why its stream ends, in a
                # stream that ends well-formed, instead of a connection cut mid-event.
                if is_sse:
                    event = dialect.stream_error("the router is shutting down; retry", "router_shutdown")
                    with contextlib.suppress(Exception):
                        await send({"type": "http.response.body", "body": _event_after(tail, event)})
                raise
            if not chunk:
                break
            if first:
                first = False
                metrics.ttft.observe(time.perf_counter() - started)
            tail = chunk[-2:]
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return status


def _event_after(tail: bytes, event: bytes) -> bytes:
    """`event`, starting a fresh one if the stream so far (ending in `tail`) stopped inside an event."""
    return event if tail.endswith(b"\n\n") else b"\n\n" + event


def parse_body(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RouterError(400, f"the request body is not valid JSON: {exc}", "invalid_json") from None
    if not isinstance(data, dict):
        raise RouterError(400, "the request body must be a JSON object", "invalid_json")
    return data
