"""How an endpoint frames its output, the one thing each endpoint module describes for `respond()`."""

from __future__ import annotations

from typing import Any, Protocol

from . import protocol


class Framing(Protocol):
    """How one endpoint frames its output: stream chunks (SSE event bytes) per choice, and the whole
    response."""

    def head(self, index: int = 0) -> bytes | None: ...

    def piece(self, text: str, index: int = 0) -> bytes: ...

    def tail(self, finish_reason: str, index: int = 0) -> bytes: ...

    def usage_chunk(self, usage: dict[str, int]) -> bytes: ...

    def whole(self, choices: list[protocol.Choice], usage: dict[str, int]) -> dict[str, Any]: ...
