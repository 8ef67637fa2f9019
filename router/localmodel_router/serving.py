"""How the router is served: uvicorn's httptools protocol with two bounds it lacks.

- A deadline for a request's line and headers (`header_timeout`): uvicorn waits for them without
  bound, so a client that connects and trickles a header byte now and then (slowloris) holds its
  connection forever. Past the deadline the client is answered 408 and disconnected. The body has its
  own deadline in the app (`body_timeout`, app.py).
- A bound on connections and requests in progress (`max_connections`), answered 503 in OpenAI's shape
  with `Retry-After` (uvicorn's own `limit_concurrency` answers in plain text).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from localmodel_router.errors import error_body
from localmodel_router.settings import RouterSettings
from localmodel_router.types import Receive, Scope, Send

_HEADER_TIMEOUT = error_body("the request's headers did not arrive in time", 408, "request_timeout")
_OVERLOADED = error_body(
    "the router holds as many connections as it may; retry later", 503, "router_overloaded"
)


def _close_response(status: bytes, body: bytes) -> bytes:
    head = b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\nconnection: close\r\n"
    return head + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body


class RouterProtocol(HttpToolsProtocol):
    """Set `header_timeout`, `max_connections` and `retry_after` on a subclass (`protocol_for`)."""

    header_timeout: float = RouterSettings.header_timeout
    max_connections: int = RouterSettings.max_connections
    retry_after: int = RouterSettings.retry_after
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:  # a kept-alive connection starts its next request
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        if len(self.connections) <= self.max_connections and len(self.tasks) < self.max_connections:
            super().on_headers_complete()
            return
        app = self.app
        self.app = self._overloaded
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.write(_close_response(b"408 Request Timeout", _HEADER_TIMEOUT))
            self.transport.close()

    async def _overloaded(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(_OVERLOADED)).encode()),
            (b"retry-after", str(self.retry_after).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": _OVERLOADED})


def protocol_for(settings: RouterSettings) -> type[RouterProtocol]:
    """The protocol class uvicorn instantiates per connection, carrying these settings."""
    return type(
        "BoundedRouterProtocol",
        (RouterProtocol,),
        {
            "header_timeout": settings.header_timeout,
            "max_connections": settings.max_connections,
            "retry_after": settings.retry_after,
        },
    )


def uvicorn_config(app: Any, settings: RouterSettings, host: str, port: int, **extra: Any) -> Any:
    """The uvicorn configuration the router runs with (the CLI's and the tests')."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_for(settings),
        lifespan="on",
        access_log=False,
        server_header=False,
        date_header=False,
        backlog=4096,
        timeout_keep_alive=75,
        timeout_graceful_shutdown=math.ceil(settings.graceful_shutdown),  # uvicorn takes whole seconds
        **extra,
    )
