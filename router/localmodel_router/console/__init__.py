"""The web console: a small static single-page app at `/` and the JSON endpoints it reads under
`/console/api/` (api.py), as one Starlette app the router hands every path it owns
(`owns(path)`); the OpenAI paths never reach it.

The page (index.html, ES modules and CSS under static/, no build step, no third-party asset) is served
to anyone: it holds no data. Every JSON endpoint asks for an API key when keys are configured, the same
keys as the API; the page keeps the key in the browser's session storage. Every answer carries a strict
Content-Security-Policy (`default-src 'self'`: no inline script, nothing from elsewhere).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router

from localmodel_router.auth import ApiKeys
from localmodel_router.autosetup import AutoSetup
from localmodel_router.table import ModelTable
from localmodel_router.types import Receive, Scope, Send
from localmodel_runtime.gallery import GallerySource

from .api import SECURITY_HEADERS, ConsoleApi, json_response
from .details import ClusterDetails, DetailSource, LocalDetails, NoDetails

__all__ = ["Console", "owns"]

PREFIX = "/console/"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}


def owns(path: str) -> bool:
    """Whether `path` belongs to the console: `/` and everything under `/console/`."""
    return path == "/" or path == "/console" or path.startswith(PREFIX)


@functools.cache
def _static_files() -> dict[str, tuple[bytes, str]]:
    """name → (content, media type) of every file under static/, read once."""
    found: dict[str, tuple[bytes, str]] = {}
    for item in resources.files(__package__).joinpath("static").iterdir():
        suffix = "." + item.name.rsplit(".", 1)[-1]
        if item.is_file() and suffix in _TYPES:
            found[item.name] = (item.read_bytes(), _TYPES[suffix])
    return found


def detail_source(discovery: Any) -> tuple[DetailSource, str]:
    """Where the console reads model details, by the router's discovery: the local table's file, or the
    Kubernetes client and namespaces the discovery watches."""
    path = getattr(discovery, "path", None)
    if path is not None:
        return LocalDetails(path), "local"
    client = getattr(discovery, "client", None)
    if client is not None:
        namespaces: list[str | None] = list(getattr(discovery, "namespaces", None) or [None])
        return ClusterDetails(client, namespaces), "cluster"
    return NoDetails(), "local"


class Console:
    def __init__(
        self,
        table: ModelTable,
        keys: ApiKeys,
        discovery: Any = None,
        galleries: Sequence[GallerySource] = (),
        autosetup: AutoSetup | None = None,
    ) -> None:
        details, mode = detail_source(discovery)
        sources = list(galleries) or (list(autosetup.settings.sources) if autosetup else [])
        self.api = ConsoleApi(table, keys, details, mode, sources, autosetup)
        self.files = _static_files()
        self.router = Router(
            [
                Route("/", self.index, methods=["GET", "HEAD"]),
                Route("/console", self.index, methods=["GET", "HEAD"]),
                Route("/console/", self.index, methods=["GET", "HEAD"]),
                Route("/console/static/{name}", self.static, methods=["GET", "HEAD"]),
                Route("/console/api/models", self.api.models, methods=["GET"]),
                Route("/console/api/galleries", self.api.galleries, methods=["GET"]),
                Route("/console/api/galleries/install", self.api.install, methods=["POST"]),
                Route("/console/{rest:path}", self.not_found),
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.router(scope, receive, send)

    async def index(self, request: Request) -> Response:
        return self._file("index.html")

    async def static(self, request: Request) -> Response:
        return self._file(request.path_params["name"])

    async def not_found(self, request: Request) -> Response:
        message = f"no console route for {request.method} {request.url.path}"
        return json_response({"error": {"message": message, "type": "invalid_request_error"}}, 404)

    def _file(self, name: str) -> Response:
        found = self.files.get(name)
        if found is None:
            return Response(b"not found", 404, SECURITY_HEADERS, "text/plain")
        content, media_type = found
        return Response(content, 200, SECURITY_HEADERS, media_type)
