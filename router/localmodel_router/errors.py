"""The router's exceptions, and OpenAI-shaped errors: every answer the router gives that is not the
upstream's own success.

The official clients unwrap `{"error": {"message", "type", "param", "code"}}` and map the HTTP status
to an exception class, so every path (ours, and upstream bodies we relay) ends up in this shape.

One tree; each class lives beside the code that raises it:

    RouterException
    ├── RouterError            a request fails: answered with its status and an OpenAI error body
    ├── UpstreamError          a runtime could not be reached or broke off (upstream.py); retried on
    │                          another endpoint, else answered as a RouterError
    ├── Exists                 the LocalModel automatic setup creates is there already (autosetup/store.py)
    ├── KubeError              a Kubernetes API request failed (kube.py, the one door to the API)
    │   ├── NotFound               404
    │   └── Conflict               409
    └── ConfigurationError     the router cannot start with what it was given: one line, exit 2
        ├── UsageError         a command-line flag (main.py)
        ├── ApiKeyError        the API keys file (auth.py)
        ├── AutoSetupConfigError  automatic setup's file (autosetup/settings.py)
        ├── TableError         local mode's routing table (local_table.py)
        └── LocalModeError     `localmodel up`'s models directory and processes (local.py)
"""

from __future__ import annotations

from typing import Any

import orjson

from localmodel_runtime.openai_errors import error_type


def error_body(
    message: str, status: int, code: str | None = None, param: str | None = None, type_: str | None = None
) -> bytes:
    error = {"message": message, "type": type_ or error_type(status), "param": param, "code": code}
    return orjson.dumps({"error": error})


class RouterException(Exception):
    """The root of the router's exceptions (the tree above)."""


class ConfigurationError(RouterException):
    """A configuration the router cannot start with; the message is the one line printed."""


class RouterError(RouterException):
    """A failure answered to the client with `status` and an OpenAI error body."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        param: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or []

    def body(self) -> bytes:
        return error_body(self.message, self.status, self.code, self.param)


def normalise_error_body(status: int, body: bytes) -> bytes:
    """Turn an upstream error body of any shape into OpenAI's.

    Seen in the wild: OpenAI's own shape (kept, missing keys filled), vLLM's flat
    `{"object": "error", "message", "code": 400}`, `{"error": "<string>"}`, and plain text.
    """
    try:
        data: Any = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    message: str | None = None
    code: Any = None
    param: Any = None
    type_: Any = None
    if isinstance(data, dict):
        inner = data.get("error", data)
        if isinstance(inner, str):
            message = inner
        elif isinstance(inner, dict):
            raw = inner.get("message", inner.get("detail"))
            message = raw if isinstance(raw, str) else (orjson.dumps(raw).decode() if raw else None)
            code, param, type_ = inner.get("code"), inner.get("param"), inner.get("type")
    if message is None:
        text = body.decode("utf-8", "replace").strip()
        message = text[:2000] if text else f"upstream answered HTTP {status}"
    # OpenAI's `code` is a string or null; some servers put the HTTP status there as an integer.
    code_out = code if isinstance(code, str) else None
    param_out = param if isinstance(param, str) else None
    type_out = type_ if isinstance(type_, str) and type_ else None
    return error_body(message, status, code_out, param_out, type_out)
