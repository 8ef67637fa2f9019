"""OpenAI's error body, and the one exception the endpoints raise to answer with it.

Every failure a client can see is `{"error": {"message", "type", "param", "code"}}` with the status
OpenAI would use: the official clients map the status to an exception class and copy `param` and
`code` onto it. Backend errors are converted here, at the HTTP edge; nothing else reaches the client
(an unexpected exception becomes a 500 with a one-line message, and the traceback goes to the log).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.responses import Response

from localmodel_runtime.errors import LocalModelException

from ..backends.base import BackendError, BackendUnavailable, InvalidRequest, UnsupportedOperation
from ..openai_errors import error_type

# pydantic error type → OpenAI's `code` for the same mistake.
_VALIDATION_CODES = {
    "missing": "missing_required_parameter",
    "extra_forbidden": "unknown_parameter",
    "greater_than_equal": "integer_below_min_value",
    "greater_than": "integer_below_min_value",
    "less_than_equal": "integer_above_max_value",
    "less_than": "integer_above_max_value",
}


def error_payload(
    message: str, status: int, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type(status), "param": param, "code": code}}


class APIError(LocalModelException):
    """A request that is answered with an OpenAI error body and `status`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def payload(self) -> dict[str, Any]:
        return error_payload(self.message, self.status, param=self.param, code=self.code)

    def response(self) -> Response:
        return Response(
            orjson.dumps(self.payload()),
            status_code=self.status,
            headers=self.headers,
            media_type="application/json",
        )


def _param(loc: tuple[int | str, ...], data: Any) -> str | None:
    """OpenAI's name for a location in the body (`messages[0].role`).

    pydantic puts union members ("str", "list[str]") and validator names in the location; only the
    parts that exist in the request body are kept.
    """
    param = ""
    node = data
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            param += f".{part}" if param else part
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            param += f"[{part}]"
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and not any(c in part for c in "[]-"):
            param += f".{part}" if param else part  # a missing key: its name is the parameter
            node = None
    return param or None


def from_validation(exc: ValidationError, data: Any) -> APIError:
    """The first problem of a request body, named the way OpenAI names it."""
    item = exc.errors(include_url=False)[0]
    param = _param(tuple(item["loc"]), data)
    kind = item["type"]
    message = str(item["msg"]).removeprefix("Value error, ")
    if kind == "missing":
        text = f"Missing required parameter: '{param}'."
    elif param:
        text = f"Invalid value for '{param}': {message}."
    else:
        text = f"Invalid request body: {message}."
    code = _VALIDATION_CODES.get(kind, "invalid_type" if kind.endswith("_type") else "invalid_value")
    return APIError(400, text, param=param, code=code)


def from_backend(exc: BackendError, *, prompt_param: str = "prompt") -> APIError:
    """Map a backend's error; `prompt_param` is what the prompt is called in this endpoint's request."""
    if isinstance(exc, InvalidRequest):
        param = prompt_param if exc.param == "prompt" else exc.param
        return APIError(400, str(exc), param=param, code=exc.code)
    if isinstance(exc, UnsupportedOperation):
        return APIError(400, str(exc), code="unsupported_operation")
    if isinstance(exc, BackendUnavailable):
        return APIError(503, str(exc), code="backend_unavailable")
    return APIError(500, str(exc) or type(exc).__name__, code="backend_error")


def model_not_found(name: str) -> APIError:
    return APIError(
        404,
        f"The model `{name}` does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )
