"""The router as a plain ASGI app: routing by path, authentication, model choice, and the small
endpoints (`/v1/models`, health, metrics). No framework on the hot path: per request it reads a few
headers, parses the JSON body once with orjson and hands over to the forwarder."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from localmodel_router.auth import ApiKeys, bearer_token
from localmodel_router.autosetup import AutoSetup, Requester
from localmodel_router.console import Console, owns
from localmodel_router.dialects import dialect_for
from localmodel_router.discovery import Discovery
from localmodel_router.errors import RouterError
from localmodel_router.intake import DisconnectWatch, read_body, too_large
from localmodel_router.metrics import Metrics
from localmodel_router.proxy import Forwarder, parse_body
from localmodel_router.scale_to_zero import ScaleToZero
from localmodel_router.settings import RouterSettings
from localmodel_router.table import Endpoint, ModelEntry, ModelTable, Scaler
from localmodel_router.types import Receive, Scope, Send
from localmodel_router.upstream import Pool
from localmodel_runtime.client_gone import ClientGone
from localmodel_runtime.gallery import GallerySource

log = logging.getLogger("localmodel.router")

PROXIED = frozenset(
    {
        "/chat/completions",
        "/completions",
        "/edits",
        "/embeddings",
        "/rerank",
        "/responses",
        "/messages",
        "/messages/count_tokens",
    }
)
# Request headers passed on to the runtime; everything else (the router's API key included) stays.
_FORWARDED = frozenset({b"accept", b"x-request-id", b"user-agent", b"traceparent", b"tracestate"})
_JSON = [(b"content-type", b"application/json")]


class RouterApp:
    def __init__(
        self,
        table: ModelTable,
        discovery: Discovery | None = None,
        settings: RouterSettings | None = None,
        keys: ApiKeys | None = None,
        scaler: Scaler | None = None,
        autosetup: AutoSetup | None = None,
        galleries: tuple[GallerySource, ...] = (),
    ) -> None:
        self.table = table
        self.discovery = discovery
        self.settings = settings or RouterSettings()
        self.keys = keys or ApiKeys(set())
        self.metrics = Metrics(table)
        self.pool = Pool(self.settings.connect_timeout)
        self.scale = ScaleToZero(
            table,
            scaler or (discovery.scaler if discovery else None),
            wake_hold=self.settings.cold_start_timeout,
            clock=discovery.clock if discovery else None,
            autoscale_interval=self.settings.autoscale_interval,
            autoscale_window=self.settings.autoscale_window,
        )
        self.forwarder = Forwarder(table, self.pool, self.settings, self.scale)
        self.autosetup = autosetup
        self.console = Console(table, self.keys, discovery, galleries, autosetup)
        table.model_removed.append(self._forget_model)
        table.endpoints_removed.append(self._forget_endpoints)
        self._openapi: bytes | None = None
        self._background: list[asyncio.Task[None]] = []

    def _forget_model(self, entry: ModelEntry) -> None:
        """Every piece of per-model state goes with the model (a deleted model must leave nothing)."""
        self.metrics.forget(entry.name)
        self.forwarder.forget(entry.name)
        self.scale.forget(entry.name)
        clock = self.scale.clock
        if clock is not None:
            clock.forget(entry)

    def _forget_endpoints(self, entry: ModelEntry, gone: list[Endpoint]) -> None:
        for endpoint in gone:
            self.pool.drop(endpoint.host, endpoint.port)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)

    # lifespan
    async def startup(self) -> None:
        if self.discovery is not None:
            await self.discovery.start(self.table)
        else:
            self.table.synced = True
        loop = asyncio.get_running_loop()
        self._background.append(loop.create_task(self.scale.run()))
        self._background.append(loop.create_task(self.forwarder.picker.run()))

    async def shutdown(self) -> None:
        for task in self._background:
            task.cancel()
        if self.discovery is not None:
            await self.discovery.stop()
        self.pool.close()

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("router start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # http
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if owns(path):  # the web console: `/` and `/console/...`
            await self.console(scope, receive, send)
            return
        method: str = scope["method"]
        route = path[3:] if path.startswith("/v1/") else path
        dialect = dialect_for(route)
        try:
            if route in PROXIED:
                if method != "POST":
                    raise RouterError(405, f"{path} accepts POST only", "method_not_allowed")
                await self.proxy(scope, receive, send, route)
                return
            handler = self._simple(route, method)
            if handler is None:
                raise RouterError(404, f"no route for {method} {path}", "not_found")
            await handler(scope, send)
        except RouterError as exc:
            body = dialect.error(exc.status, exc.message, exc.code, exc.param)
            await respond(send, exc.status, body, _JSON + exc.headers)
        except Exception:
            # A bug of ours: logged, and answered in the API's shape (not the server's plain text) when
            # nothing was sent yet; a second response start fails and the connection is dropped.
            log.exception("router error on %s %s", method, path)
            body = dialect.error(500, "internal error in the router", "internal_error", None)
            with contextlib.suppress(Exception):
                await respond(send, 500, body, _JSON)

    def _simple(self, route: str, method: str) -> Callable[[Scope, Send], Awaitable[None]] | None:
        if method not in ("GET", "HEAD"):
            return None
        if route == "/models":
            return self.list_models
        if route.startswith("/models/"):
            return self.get_model
        return {
            "/healthz": self.healthz,
            "/readyz": self.readyz,
            "/metrics": self.prometheus,
            "/openapi.json": self.openapi,
        }.get(route)

    def _authorise(self, scope: Scope) -> str | None:
        """The bearer token (or Anthropic's `x-api-key`); 401 when keys are configured and it is not
        one of them."""
        authorization = api_key = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"x-api-key":
                api_key = value.decode("latin-1").strip() or None
        token = bearer_token(authorization) or api_key
        if self.keys.enabled and not self.keys.check(token):
            message = "Missing API key" if token is None else "Incorrect API key provided"
            raise RouterError(401, message, "invalid_api_key")
        return token

    async def list_models(self, scope: Scope, send: Send) -> None:
        self._authorise(scope)
        data = [_model_object(e) for e in self.table.models.values()]
        data += [_model_object(e, alias) for alias, e in _aliases(self.table)]
        await respond(send, 200, orjson.dumps({"object": "list", "data": data}), _JSON)

    async def get_model(self, scope: Scope, send: Send) -> None:
        self._authorise(scope)
        name = scope["path"].split("/models/", 1)[1]
        entry = self.table.resolve(name)
        if entry is None:
            raise RouterError(404, f"The model `{name}` does not exist", "model_not_found", "model")
        await respond(send, 200, orjson.dumps(_model_object(entry, name)), _JSON)

    async def healthz(self, scope: Scope, send: Send) -> None:
        await respond(send, 200, b'{"status":"ok"}', _JSON)

    async def readyz(self, scope: Scope, send: Send) -> None:
        if not self.table.synced:
            raise RouterError(503, "discovery has not synced yet", "not_ready")
        if self.discovery is not None and not self.discovery.healthy:
            raise RouterError(503, "discovery lost its watches and is listing again", "not_ready")
        await respond(send, 200, b'{"status":"ok"}', _JSON)

    async def openapi(self, scope: Scope, send: Send) -> None:
        if self._openapi is None:
            from localmodel_router.openapi import router_document_bytes

            self._openapi = router_document_bytes()
        await respond(send, 200, self._openapi, _JSON)

    async def prometheus(self, scope: Scope, send: Send) -> None:
        if self.settings.metrics_need_key:
            self._authorise(scope)
        await respond(send, 200, self.metrics.render(), [(b"content-type", b"text/plain; version=0.0.4")])

    def choose_model(self, data: dict[str, Any], token: str | None) -> ModelEntry:
        models = self.table.models
        name = data.get("model")
        if isinstance(name, str) and name:
            entry = self.table.resolve(name)
            if entry is None:
                raise RouterError(404, f"The model `{name}` does not exist", "model_not_found", "model")
            return entry
        by_token = self.table.resolve(token) if token is not None else None  # exact name, never a pattern
        if by_token is not None:
            return by_token
        if len(models) == 1:
            return next(iter(models.values()))
        raise RouterError(
            404,
            f"no model named in the request and {len(models)} models are served; set `model`",
            "model_not_found",
            "model",
        )

    async def proxy(self, scope: Scope, receive: Receive, send: Send, route: str) -> None:
        started = time.perf_counter()
        dialect = dialect_for(route)
        token = self._authorise(scope)
        settings = self.settings
        length: int | None = None
        forwarded: list[bytes] = []
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = int(value) if value.isdigit() else None
            elif name in _FORWARDED:
                forwarded.append(name + b": " + value + b"\r\n")
        if length is not None and length > settings.max_body_bytes:
            raise too_large(settings.max_body_bytes)
        try:
            body = await read_body(receive, settings.max_body_bytes, settings.body_timeout)
        except ClientGone:
            return
        data = parse_body(body)
        try:
            entry = self.choose_model(data, token)
        except RouterError as exc:
            requested = data.get("model")
            if self.autosetup is None or exc.code != "model_not_found" or not isinstance(requested, str):
                raise
            found = await self._auto_setup(requested, scope, receive)
            if found is None:
                return  # the client went away while its model was being set up
            entry = found
        if data.get("model") not in (None, "", entry.name):
            # Asked for by an alias: the runtime knows its model by its own name.
            data = {**data, "model": entry.name}
            body = orjson.dumps(data)
        metrics = self.metrics.model(entry.name)
        query = scope.get("query_string") or b""
        target = b"/v1" + route.encode() + (b"?" + query if query else b"")
        head = b"".join(
            (
                b"POST ",
                target,
                b" HTTP/1.1\r\ncontent-type: application/json\r\ncontent-length: ",
                str(len(body)).encode(),
                b"\r\n",
                *forwarded,
            )
        )
        entry.in_flight += 1
        entry.last_used = time.monotonic()
        self.scale.touched(entry)
        status = 500
        try:
            # A client that goes away cancels this task, and with it the upstream request.
            async with DisconnectWatch(receive):
                status = await self.forwarder.forward(
                    send, entry, metrics, data, head, body, started, dialect
                )
        except RouterError as exc:
            status = exc.status
            error = dialect.error(exc.status, exc.message, exc.code, exc.param)
            await respond(send, exc.status, error, _JSON + exc.headers)
        except ClientGone:
            status = 499  # nginx's "client closed request"
        finally:
            entry.in_flight -= 1
            entry.last_used = time.monotonic()
        metrics.request(status)
        metrics.latency.observe(time.perf_counter() - started)

    async def _auto_setup(self, requested: str, scope: Scope, receive: Receive) -> ModelEntry | None:
        """Automatic setup of an unknown model, holding the request; None when the client left."""
        assert self.autosetup is not None
        try:
            with self.forwarder.waiting_slot(f"model {requested!r} is being set up"):
                async with DisconnectWatch(receive):
                    return await self.autosetup.serve(Requester(requested, _client(scope)))
        except ClientGone:
            return None


def _client(scope: Scope) -> str:
    """The requesting client for an Event: its address, and X-Forwarded-For when a proxy sent one."""
    client = scope.get("client")
    who = f"{client[0]}" if client else "unknown client"
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            who += f" (x-forwarded-for: {value.decode('latin-1')[:200]})"
            break
    return who


def _aliases(table: ModelTable) -> list[tuple[str, ModelEntry]]:
    """The aliases that answer (their target is served, their name is not a model's own)."""
    found = [(alias, table.resolve(alias)) for alias in table.aliases if alias not in table.models]
    return [(alias, entry) for alias, entry in found if entry is not None]


def _model_object(entry: ModelEntry, name: str | None = None) -> dict[str, Any]:
    return {
        "id": name or entry.name,
        "object": "model",
        "created": entry.created,
        "owned_by": "localmodel",
        "ready": bool(entry.ready_endpoints),
        "endpoints": len(entry.endpoints),
        "ready_endpoints": len(entry.ready_endpoints),
    }


async def respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
