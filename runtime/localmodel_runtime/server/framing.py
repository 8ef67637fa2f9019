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


class OpenAIChunks(OpenAIStreamEnd):
    """The chunks of an OpenAI stream (chat or text completion): one id, time and model for all, one
    choice each, and `"usage": null` on every chunk but the last when the client asked for usage.
    A subclass names its `object`, its id prefix and how a choice carries its content."""

    object: str
    id_prefix: str

    def __init__(self, model: str, include_usage: bool) -> None:
        self.id = protocol.new_id(self.id_prefix)
        self.created = protocol.now()
        self.model = model
        self.include_usage = include_usage

    def _content(self, content: Any) -> dict[str, Any]:
        """The choice's content field(s): `{"delta": content}` or `{"text": content}`."""
        raise NotImplementedError

    def _nothing(self) -> Any:
        """The content of a chunk that carries none (the finish reason, or the usage)."""
        raise NotImplementedError

    def _chunk(self, content: Any, finish_reason: str | None, index: int = 0) -> dict[str, Any]:
        choice = {"index": index, **self._content(content), "logprobs": None, "finish_reason": finish_reason}
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }
        if self.include_usage:
            chunk["usage"] = None  # OpenAI: every chunk but the last carries "usage": null
        return chunk

    def tail(self, finish_reason: str, index: int = 0) -> bytes:
        return sse(self._chunk(self._nothing(), finish_reason, index))

    def usage_chunk(self, usage: dict[str, int]) -> bytes:
        chunk = self._chunk(self._nothing(), None)
        chunk["choices"] = []
        chunk["usage"] = usage
        return sse(chunk)
