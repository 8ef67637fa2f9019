"""Who may call a runtime: with a token configured, only a caller presenting it (the router).

An ASGI wrapper around the app: `/healthz` and `/readyz` (the kubelet's probes) stay open; `/metrics`
is open unless a metrics token is set; every other path needs `Authorization: Bearer <token>` and is
otherwise answered 401 with OpenAI's error body.
"""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import error_payload

OPEN_PATHS = frozenset({"/healthz", "/readyz"})


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


class TokenGate:
    def __init__(self, app: ASGIApp, token: str | None, metrics_token: str | None = None) -> None:
        self.app = app
        self.token = token
        self.metrics_token = metrics_token

    def _allowed(self, path: str, presented: str | None) -> bool:
        if path in OPEN_PATHS:
            return True
        if path == "/metrics":
            wanted = [t for t in (self.metrics_token, self.token) if t] if self.metrics_token else []
        else:
            wanted = [self.token] if self.token else []
        if not wanted:
            return True
        return presented is not None and any(hmac.compare_digest(presented, t) for t in wanted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._allowed(scope.get("path", ""), _bearer(scope)):
            await self.app(scope, receive, send)
            return
        message = "This runtime answers only the localmodel router: a valid bearer token is required."
        body = json.dumps(error_payload(message, 401, code="invalid_api_key")).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b"Bearer"),
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})
