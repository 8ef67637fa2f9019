"""The console's JSON endpoints, behind the same API keys as the OpenAI API.

* `GET /console/api/models`: every model the router serves (and every LocalModel it knows of) with
  backend, device, namespace, ready/desired replicas, requests in flight, conditions and recent Events.
* `GET /console/api/galleries?q=`: the configured galleries' entries, searched by name, tag or
  description, each saying whether it can be installed here and, when not, why.
* `POST /console/api/galleries/install {"ref": "gallery@name"}`: create the entry's LocalModel through
  automatic setup (only where it is on and allows the gallery); 202 and the API name to watch.

Errors use the OpenAI body (`{"error": {"message", "type", "param", "code"}}`) like the API, so the
page reads one shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from localmodel_router.auth import ApiKeys, bearer_token
from localmodel_router.autosetup import AutoSetup, Requester
from localmodel_router.autosetup.resolution import GalleryCatalog
from localmodel_router.errors import RouterError
from localmodel_router.table import ModelEntry, ModelTable
from localmodel_runtime.gallery import GalleryEntry, GallerySource

from .details import DetailSource, ModelDetail

JsonDict = dict[str, Any]
MAX_ENTRIES = 500
"""Most gallery entries one answer lists (a search narrows them)."""
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, SECURITY_HEADERS, "application/json")


def error_response(exc: RouterError) -> Response:
    headers = {**SECURITY_HEADERS, **{k.decode(): v.decode() for k, v in exc.headers}}
    return Response(exc.body(), exc.status, headers, "application/json")


class ConsoleApi:
    def __init__(
        self,
        table: ModelTable,
        keys: ApiKeys,
        details: DetailSource,
        mode: str,
        galleries: Sequence[GallerySource] = (),
        autosetup: AutoSetup | None = None,
    ) -> None:
        self.table = table
        self.keys = keys
        self.details = details
        self.mode = mode
        self.autosetup = autosetup
        self.catalog = autosetup.catalog if autosetup is not None else GalleryCatalog(galleries, 60.0)

    def authorise(self, request: Request) -> None:
        """As the API: a bearer token or `x-api-key`, checked only when keys are configured."""
        authorization = request.headers.get("authorization")
        token = bearer_token(authorization.encode("latin-1") if authorization else None)
        token = token or request.headers.get("x-api-key", "").strip() or None
        if self.keys.enabled and not self.keys.check(token):
            message = "Missing API key" if token is None else "Incorrect API key provided"
            raise RouterError(401, message, "invalid_api_key")

    async def models(self, request: Request) -> Response:
        try:
            self.authorise(request)
            snapshot = await self.details.snapshot()
        except RouterError as exc:
            return error_response(exc)
        names = sorted(set(self.table.models) | set(snapshot.details))
        views = [model_view(n, self.table.get(n), snapshot.details.get(n)) for n in names]
        return json_response(
            {
                "mode": self.mode,
                "synced": self.table.synced,
                "keys": self.keys.enabled,
                "problems": snapshot.problems,
                "models": views,
            }
        )

    async def galleries(self, request: Request) -> Response:
        try:
            self.authorise(request)
        except RouterError as exc:
            return error_response(exc)
        query = request.query_params.get("q", "").strip().lower()
        entries = await self.catalog.entries()
        matching = [e for e in entries if not query or _matches(e, query)]
        views = [self._entry_view(e) for e in matching[:MAX_ENTRIES]]
        return json_response(
            {
                "galleries": [s.name for s in self.catalog.sources],
                "install": self._install_state(),
                "total": len(matching),
                "entries": views,
            }
        )

    async def install(self, request: Request) -> Response:
        try:
            self.authorise(request)
            ref = await _requested_ref(request)
            return await self._install(ref, request)
        except RouterError as exc:
            return error_response(exc)

    async def _install(self, ref: str, request: Request) -> Response:
        if self.autosetup is None:
            reason = self._install_state()["reason"]
            raise RouterError(403, f"cannot install {ref}: {reason}", "auto_setup_off")
        gallery, _, name = ref.rpartition("@")
        if not gallery or not name:
            raise RouterError(400, f"{ref!r} is not a gallery entry (gallery@name)", "invalid_ref", "ref")
        if not await self.catalog.find(ref):
            raise RouterError(404, f"no gallery entry {ref}", "entry_not_found", "ref")
        if gallery not in self.autosetup.settings.galleries:
            message = f"cannot install {ref}: gallery {gallery} is not an allowed gallery of automatic setup"
            raise RouterError(403, message, "auto_setup_not_allowed", "ref")
        if name in self.table.models:
            return json_response({"model": name, "created": False, "message": f"{name} is installed"})
        # The entry's own name when that names it alone among the allowed galleries, else gallery@name.
        client = request.client.host if request.client else "unknown client"
        who = f"{client} (console)"
        try:
            plan, model = await self.autosetup.install(Requester(name, who))
        except RouterError as exc:
            if exc.code != "model_ambiguous":
                raise
            plan, model = await self.autosetup.install(Requester(ref, who))
        message = f"LocalModel {self.autosetup.namespace}/{plan.object_name} is being set up as {model}"
        return json_response(
            {
                "model": model,
                "created": True,
                "namespace": self.autosetup.namespace,
                "object": plan.object_name,
                "message": message,
            },
            202,
        )

    def _install_state(self) -> JsonDict:
        if self.autosetup is None:
            reason = (
                "installing needs automatic setup, which runs in cluster mode only"
                if self.mode == "local"
                else "automatic setup is off on this router (an administrator switches it on)"
            )
            return {"enabled": False, "reason": reason}
        return {"enabled": True, "galleries": list(self.autosetup.settings.galleries)}

    def _entry_view(self, entry: GalleryEntry) -> JsonDict:
        data = entry.data
        if self.autosetup is None:
            installable, why = False, str(self._install_state()["reason"])
        elif entry.gallery not in self.autosetup.settings.galleries:
            installable, why = False, f"gallery {entry.gallery} is not allowed by automatic setup"
        else:
            installable, why = True, None
        return {
            "ref": entry.ref,
            "gallery": entry.gallery,
            "name": entry.name,
            "description": entry.description,
            "tags": entry.tags,
            "license": _text(data.get("license")),
            "urls": [str(u) for u in data.get("urls") or [] if isinstance(u, str)][:5],
            "installed": entry.name in self.table.models or entry.ref in self.table.models,
            "installable": installable,
            "reason": why,
        }


async def _requested_ref(request: Request) -> str:
    try:
        data = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise RouterError(400, 'the body must be JSON: {"ref": "gallery@name"}', "invalid_json") from None
    ref = data.get("ref") if isinstance(data, dict) else None
    if not isinstance(ref, str) or not ref.strip():
        raise RouterError(400, "`ref` (gallery@name) is required", "invalid_request", "ref")
    return ref.strip()


def _matches(entry: GalleryEntry, query: str) -> bool:
    if query in entry.name.lower() or query in entry.description.lower():
        return True
    return any(query in tag.lower() for tag in entry.tags)


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def model_view(name: str, entry: ModelEntry | None, detail: ModelDetail | None) -> JsonDict:
    """One model as the console shows it: the routing table's live state and what its detail adds."""
    detail = detail or ModelDetail()
    endpoints = entry.endpoints if entry is not None else []
    ready = len(entry.ready_endpoints) if entry is not None else 0
    desired = detail.desired
    if desired is None and entry is not None:
        desired = entry.settings.replicas
    degraded = next(
        (c for c in detail.conditions if c.get("type") == "Degraded" and c.get("status") == "True"), None
    )
    if degraded is not None:
        state = "degraded"
    elif ready:
        state = "ready"
    elif entry is not None and entry.settings.min_replicas == 0 and not endpoints:
        state = "scaled to zero"
    elif entry is None:
        state = "not routed"
    else:
        state = "starting"
    return {
        "name": name,
        "namespace": detail.namespace or (entry.settings.namespace if entry else None),
        "resource": detail.resource or (entry.settings.resource_name if entry else None),
        "backend": detail.backend,
        "device": detail.device,
        "state": state,
        "ready": ready > 0,
        "replicas": {"ready": ready, "desired": desired, "endpoints": len(endpoints)},
        "minReplicas": entry.settings.min_replicas if entry else None,
        "inFlight": entry.in_flight if entry is not None else 0,
        "endpoints": [{"address": e.address, "ready": e.ready, "inFlight": e.in_flight} for e in endpoints],
        "conditions": detail.conditions,
        "events": detail.events,
    }
