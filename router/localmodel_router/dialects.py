"""The error shapes of the APIs the router proxies: OpenAI's on every path but Anthropic's Messages API
(`/v1/messages`, `/v1/messages/count_tokens`), whose clients (Claude Code, the `anthropic` SDK) read
`{"type": "error", "error": {"type", "message"}}` and `event: error` in a stream.

The router's own errors and the upstream's error bodies alike are answered in the path's shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from localmodel_router.errors import error_body, normalise_error_body
from localmodel_runtime.anthropic_errors import anthropic_error, from_openai_error


@dataclass(frozen=True)
class Dialect:
    anthropic: bool = False

    def error(self, status: int, message: str, code: str | None = None, param: str | None = None) -> bytes:
        if self.anthropic:
            return orjson.dumps(anthropic_error(status, message))
        return error_body(message, status, code, param)

    def normalise(self, status: int, raw: bytes) -> bytes:
        """An upstream error body of any shape, in this API's shape."""
        if self.anthropic:
            kept = _anthropic_body(raw)
            if kept is not None:
                return kept
            return orjson.dumps(from_openai_error(orjson.loads(normalise_error_body(status, raw)), status))
        return normalise_error_body(status, raw)

    def stream_error(self, message: str, code: str) -> bytes:
        """An error event that ends a broken stream (after the 200, nothing else can say it)."""
        if self.anthropic:
            return b"event: error\ndata: " + orjson.dumps(anthropic_error(502, message)) + b"\n\n"
        return b"data: " + error_body(message, 502, code) + b"\n\n"


OPENAI = Dialect()
ANTHROPIC = Dialect(anthropic=True)


def dialect_for(route: str) -> Dialect:
    return ANTHROPIC if route == "/messages" or route.startswith("/messages/") else OPENAI


def _anthropic_body(raw: bytes) -> bytes | None:
    try:
        data: Any = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None
    ok = isinstance(data, dict) and data.get("type") == "error" and isinstance(data.get("error"), dict)
    return raw if ok else None
