"""The ASGI app: routes, the model's lifecycle, and the HTTP edge that turns every failure into
OpenAI's error body.

The app answers `/healthz` as soon as the process serves, loads the model in the background (a large
model takes minutes, and the kubelet must see a live process meanwhile), and reports ready on
`/readyz` once the model and its templates are loaded. A load that fails is fatal: `on_fatal` tells
the CLI, which stops the server and exits with the failure's one-line reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..backends.base import Backend, BackendError, BackendUnavailable, Capabilities
from ..backends.registry import create_backend, load_backend
from ..client_gone import ClientGone
from ..config import ModelConfig, ModelConfigError
from ..templates import PromptRenderer, TemplateError
from . import protocol
from .admission import Admission, AdmissionSettings
from .errors import APIError, error_payload, from_backend
from .load import PrefixSlots, load_document
from .metrics import CONTENT_TYPE, ServerMetrics
from .openapi import openapi_document, package_version
from .serving import ModelServer
from .serving_chat import create_chat_completion
from .serving_completion import create_completion, create_edit
from .serving_embedding import create_embedding
from .serving_messages import anthropic_errors, count_tokens, create_message
from .serving_rerank import create_rerank
from .serving_responses import create_response
from .streaming import json_response

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 8 * 1024 * 1024
DEFAULT_MAX_WAITING = 64


@dataclass(frozen=True)
class ServerSettings:
    max_body_bytes: int = DEFAULT_MAX_BODY
    """Request bodies above this are refused with 413."""
    max_waiting: int = DEFAULT_MAX_WAITING
    """Requests that may wait for a generation slot; more get 429 (`limits.max_concurrent` overrides)."""
    queue_timeout: float | None = None
    """Seconds a request may wait for a slot before it gets 429 (None: as long as it takes)."""


@dataclass(frozen=True)
class Fatal:
    """Why the model could not be served: the operator reads `reason: message` from the termination log."""

    reason: str
    message: str
    exit_code: int

    @property
    def line(self) -> str:
        return f"{self.reason}: {self.message}"


def classify(exc: BaseException) -> Fatal:
    message = " ".join(str(exc).split()) or type(exc).__name__  # one line, whatever the library said
    if isinstance(exc, BackendUnavailable):
        return Fatal("MissingBackend", message, 1)
    if isinstance(exc, TemplateError | ModelConfigError):
        return Fatal("InvalidSpec", message, 2)
    if isinstance(exc, BackendError):
        return Fatal("ModelLoadError", message, 1)
    return Fatal("ModelLoadError", f"{type(exc).__name__}: {message}", 1)


def served_name(config: ModelConfig, model_name: str | None = None) -> str:
    if config.name:
        return config.name
    if model_name:
        return model_name
    return Path(config.model_file).stem if config.model_file else "model"


def admission_settings(
    config: ModelConfig, caps: Capabilities, settings: ServerSettings
) -> AdmissionSettings:
    limit = max(1, caps.max_concurrency)
    max_waiting = settings.max_waiting
    limits = config.limits
    if limits and limits.max_concurrent:
        # LocalAI's max_concurrent bounds the requests in flight: running plus waiting.
        limit = min(limit, limits.max_concurrent)
        max_waiting = limits.max_concurrent - limit
    retry_after = (limits.retry_after_seconds if limits else None) or 1
    return AdmissionSettings(limit, max_waiting, settings.queue_timeout, retry_after)


class ModelState:
    """The model's lifecycle: loading, then `server` (ready) or `fatal`."""

    def __init__(
        self,
        config: ModelConfig,
        models_dir: Path,
        name: str,
        settings: ServerSettings,
        backend: Backend | None,
        on_fatal: Callable[[Fatal], None] | None,
        on_ready: Callable[[], None] | None = None,
        aliases: list[str] | None = None,
    ) -> None:
        self.config = config
        self.aliases = [a for a in dict.fromkeys(aliases or []) if a != name]
        self.models_dir = models_dir
        self.name = name
        self.settings = settings
        self.backend = backend
        self.on_fatal = on_fatal
        self.on_ready = on_ready
        self.metrics = ServerMetrics(name)
        self.server: ModelServer | None = None
        self.fatal: Fatal | None = None
        self.created = protocol.now()

    async def load(self) -> None:
        started = time.monotonic()
        try:
            if self.backend is None:
                self.backend = create_backend(self.config, self.models_dir)
            await load_backend(self.backend)
            info = self.backend.model_info()
            renderer = PromptRenderer.from_config(
                self.config,
                self.models_dir,
                model_info_chat_template=info.chat_template,
                bos_token=info.bos_token,
                eos_token=info.eos_token,
            )
            caps = self.backend.capabilities()
            admission = Admission(admission_settings(self.config, caps, self.settings))
        except Exception as exc:
            self.fatal = classify(exc)
            log.debug("loading %s failed", self.name, exc_info=True)
            if self.on_fatal is not None:
                self.on_fatal(self.fatal)
            else:
                log.error("%s", self.fatal.line)
            return
        self.metrics.watch(admission, self.backend.kv_cache_usage)
        self.server = ModelServer(
            self.name,
            self.config,
            self.backend,
            renderer,
            admission,
            self.metrics,
            self.settings.max_body_bytes,
            PrefixSlots(admission.settings.limit),
            frozenset(self.aliases),
        )
        log.info(
            "model %s ready in %.1fs (backend %s, %d at once, context %d)",
            self.name,
            time.monotonic() - started,
            self.backend.name,
            admission.settings.limit,
            caps.context_size,
        )
        if self.on_ready is not None:
            self.on_ready()

    async def close(self) -> None:
        self.server = None
        if self.backend is not None:
            with contextlib.suppress(Exception):
                await self.backend.close()


def _not_ready(state: ModelState) -> Response:
    if state.fatal is not None:
        return APIError(503, state.fatal.line, code="model_load_failed").response()
    return APIError(
        503, f"The model `{state.name}` is loading.", code="model_not_ready", headers={"Retry-After": "5"}
    ).response()


def _internal_error(exc: Exception) -> Response:
    message = " ".join(str(exc).split())
    return json_response(
        error_payload(f"Internal error: {type(exc).__name__}: {message}", 500, code="internal_error"), 500
    )


Handler = Callable[[ModelServer, Request], Awaitable[Response]]


def _endpoint(state: ModelState, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def route(request: Request) -> Response:
        server = state.server
        if server is None:
            return _not_ready(state)
        try:
            return await handler(server, request)
        except APIError as exc:
            return exc.response()
        except BackendError as exc:
            return from_backend(exc).response()
        except ClientGone:
            # Nobody reads this; the generation has been cancelled and its slot freed.
            return APIError(408, "The client disconnected.", code="client_disconnected").response()
        except Exception as exc:  # a bug: answer in OpenAI's shape, keep serving, log the traceback
            log.exception("unexpected error on %s %s", request.method, request.url.path)
            return _internal_error(exc)

    return route


def create_app(
    config: ModelConfig,
    models_dir: Path,
    *,
    model_name: str | None = None,
    aliases: list[str] | None = None,
    settings: ServerSettings | None = None,
    backend: Backend | None = None,
    on_fatal: Callable[[Fatal], None] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> Starlette:
    """The app serving `config`, also under the names in `aliases` (LocalAI's `alias:` models);
    `backend` (already created, not loaded) skips the registry.

    `on_fatal` is told why the model cannot be served; `on_ready`, once it can."""
    state = ModelState(
        config,
        models_dir,
        served_name(config, model_name),
        settings or ServerSettings(),
        backend,
        on_fatal,
        on_ready,
        aliases,
    )

    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if state.server is None:
            return _not_ready(state)
        return json_response({"status": "ready", "model": state.name})

    async def list_models(request: Request) -> Response:
        names = [state.name, *state.aliases]
        data = [protocol.model_card(name, state.created) for name in names]
        return json_response({"object": "list", "data": data})

    async def get_model(request: Request) -> Response:
        name = request.path_params["model"]
        if name != state.name and name not in state.aliases:
            return APIError(
                404, f"The model `{name}` does not exist.", param="model", code="model_not_found"
            ).response()
        return json_response(protocol.model_card(name, state.created))

    async def metrics(request: Request) -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    async def load(request: Request) -> Response:
        server = state.server
        if server is None:
            return _not_ready(state)
        return json_response(load_document(server.admission, server.prefixes, server.backend.kv_cache_usage))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loading = asyncio.create_task(state.load(), name="load-model")
        app.state.model = state
        try:
            yield
        finally:
            if not loading.done():
                loading.cancel()
            await asyncio.gather(loading, return_exceptions=True)
            await state.close()

    document = openapi_document("localmodel runtime", package_version())

    async def openapi(request: Request) -> Response:
        return json_response(document)

    routes = [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v1/internal/load", load, methods=["GET"]),
    ]
    # LocalAI answers with and without the /v1 prefix.
    for prefix in ("/v1", ""):
        routes += [
            Route(f"{prefix}/models", list_models, methods=["GET"]),
            Route(f"{prefix}/models/{{model:path}}", get_model, methods=["GET"]),
            Route(f"{prefix}/chat/completions", _endpoint(state, create_chat_completion), methods=["POST"]),
            Route(f"{prefix}/completions", _endpoint(state, create_completion), methods=["POST"]),
            Route(f"{prefix}/edits", _endpoint(state, create_edit), methods=["POST"]),
            Route(f"{prefix}/embeddings", _endpoint(state, create_embedding), methods=["POST"]),
            Route(f"{prefix}/rerank", _endpoint(state, create_rerank), methods=["POST"]),
            Route(f"{prefix}/messages", anthropic_errors(_endpoint(state, create_message)), methods=["POST"]),
            Route(
                f"{prefix}/messages/count_tokens",
                anthropic_errors(_endpoint(state, count_tokens)),
                methods=["POST"],
            ),
            Route(f"{prefix}/responses", _endpoint(state, create_response), methods=["POST"]),
        ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return json_response(error_payload(exc.detail, exc.status_code), exc.status_code)

    async def internal_error(request: Request, exc: Exception) -> Response:
        return _internal_error(exc)

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: internal_error},
    )
    app.state.model = state
    return app
