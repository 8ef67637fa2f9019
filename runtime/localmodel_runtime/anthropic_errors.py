"""Anthropic's error body for each HTTP status, for the Messages API (`/v1/messages`): one table for the
runtime and the router, as openai_errors.py is for the OpenAI endpoints.

`{"type": "error", "error": {"type": "invalid_request_error", "message": "..."}}`; the official SDK
maps the status to an exception class and shows the message.
"""

from __future__ import annotations

from typing import Any

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    kind = _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def from_openai_error(body: Any, status: int) -> dict[str, Any]:
    """The Anthropic body for an OpenAI-shaped error body (what the shared error paths produce)."""
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return anthropic_error(status, str(message or f"HTTP {status}"))
