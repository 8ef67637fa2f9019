"""Raw-ASGI pieces every fake server of the tests and benches needs (no framework, so that the fakes
cost nothing next to the code they measure)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def serve_lifespan(receive: Receive, send: Send, on_startup: Callable[[], None] | None = None) -> None:
    """Answer the lifespan protocol until shutdown; `on_startup` runs before startup completes."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup" and on_startup is not None:
            on_startup()
        await send({"type": message["type"] + ".complete"})
        if message["type"] == "lifespan.shutdown":
            return


async def read_body(receive: Receive) -> bytes:
    """The whole request body."""
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


def serve_lean(app: Any, host: str, port: int, **options: Any) -> None:
    """Run `app` on uvicorn as the benches' fakes and proxies run: uvloop and httptools, no access log,
    no Server or Date header, so that the server costs as little as it can next to what is measured."""
    import uvicorn

    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        server_header=False,
        date_header=False,
        **options,
    )
