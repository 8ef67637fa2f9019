"""How an endpoint frames its output, the one thing each endpoint module describes for `respond()`."""

from __future__ import annotations

from typing import Any, Protocol

from . import protocol
from .errors import APIError
from .streaming import DONE, sse


class Framing(Protocol):
    """How one endpoint frames its output: stream chunks (SSE event bytes) per choice, how a stream ends
    (or fails after its 200), and the whole response."""

    def head(self, index: int = 0) -> bytes | None: ...

    def piece(self, text: str, index: int = 0) -> bytes: ...

    def tail(self, finish_reason: str, index: int = 0) -> bytes: ...

    def usage_chunk(self, usage: dict[str, int]) -> bytes: ...

    def done(self) -> bytes: ...

    def error(self, exc: APIError) -> bytes: ...

    def whole(self, choices: list[protocol.Choice], usage: dict[str, int]) -> dict[str, Any]: ...


class OpenAIStreamEnd:
    """How OpenAI's streams end: `data: [DONE]`, or an error event in its error body (and no [DONE], so
    that clients raise)."""

    def done(self) -> bytes:
        return DONE

    def error(self, exc: APIError) -> bytes:
        return sse(exc.payload())
