"""Holding a request while its model is set up: one creation per model, the cap, then a bounded wait."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from localmodel_router.errors import RouterError
from localmodel_router.table import ModelEntry, ModelTable

from .resolution import SOURCE, GalleryCatalog, Plan, gallery_plan, hf_plan, parse_hf_path, repository_allowed
from .settings import AutoSetupConfigError, AutoSetupSettings
from .store import Exists, ModelStore

log = logging.getLogger("localmodel.router")


@dataclass(frozen=True)
class Requester:
    """Who asked: put in the Event, never the API key."""

    model: str
    client: str
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


class AutoSetup:
    def __init__(
        self,
        settings: AutoSetupSettings,
        table: ModelTable,
        store: ModelStore,
        retry_after: int = 5,
    ) -> None:
        if settings.namespace is None:
            raise AutoSetupConfigError("automatic setup needs the namespace for created models")
        self.settings = settings
        self.namespace: str = settings.namespace
        self.table = table
        self.store = store
        self.retry_after = retry_after
        self.catalog = GalleryCatalog(settings.sources, settings.gallery_refresh)
        self._creating: dict[str, asyncio.Task[str]] = {}
        self._lock = asyncio.Lock()

    async def plan(self, requested: str) -> Plan | None:
        """What `requested` would create; None when it resolves to nothing; RouterError (403) when it
        resolves but the allowlist refuses it."""
        hf = parse_hf_path(requested)
        if hf is not None:
            if not repository_allowed(hf.repository, self.settings.repositories):
                raise RouterError(
                    403,
                    f"The model `{requested}` does not exist, and automatic setup is not allowed for "
                    f"repository {hf.repository!r}: it matches no allowed repository pattern",
                    "auto_setup_not_allowed",
                    "model",
                )
            return hf_plan(requested, hf, self.namespace)
        if not self.settings.sources or "/" in requested:
            return None
        entries = await self.catalog.find(requested)
        allowed = [e for e in entries if e.gallery in self.settings.galleries]
        if not allowed:
            if entries:
                galleries = ", ".join(sorted({e.gallery for e in entries}))
                raise RouterError(
                    403,
                    f"The model `{requested}` does not exist, and automatic setup is not allowed for "
                    f"gallery {galleries}: it is not an allowed gallery",
                    "auto_setup_not_allowed",
                    "model",
                )
            return None
        if len(allowed) > 1:
            refs = ", ".join(e.ref for e in allowed)
            raise RouterError(
                400,
                f"The model `{requested}` names several gallery entries ({refs}); "
                "ask for one as gallery@name",
                "model_ambiguous",
                "model",
            )
        return await gallery_plan(requested, allowed[0], self.namespace)

    async def serve(self, requester: Requester) -> ModelEntry:
        """Set the requested model up (or join its setup) and wait for a ready endpoint; raises
        RouterError: 404 when nothing resolves, 403 when refused, 503 + Retry-After past the bound."""
        started = time.monotonic()
        requested = requester.model
        plan, name = await self.install(requester)
        left = self.settings.wait - (time.monotonic() - started)
        entry = await self.table.wait_ready(name, max(left, 0.0), missing_ok=True)
        if entry is None or not entry.ready_endpoints:
            raise RouterError(
                503,
                f"model `{requested}` is being set up (LocalModel {self.namespace}/{plan.object_name}) "
                f"and has no ready endpoint after {self.settings.wait:g}s; retry later",
                "model_not_ready",
                None,
                [(b"retry-after", str(self.retry_after).encode())],
            )
        return entry

    async def install(self, requester: Requester) -> tuple[Plan, str]:
        """Create the requested model's LocalModel (or join its creation) without waiting for it to
        become ready: the plan and the API name to wait for. RouterError as `serve`."""
        requested = requester.model
        plan = await self.plan(requested)
        if plan is None:
            raise RouterError(404, f"The model `{requested}` does not exist", "model_not_found", "model")
        task = self._creating.get(plan.source)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._create(plan, requester))
            self._creating[plan.source] = task
            task.add_done_callback(lambda _t: self._creating.pop(plan.source, None))
        # A client that goes away must not cancel a creation other requests share.
        return plan, await asyncio.shield(task)

    async def _create(self, plan: Plan, requester: Requester) -> str:
        """Create the LocalModel (once); returns the API name to wait for."""
        async with self._lock:  # one count-then-create at a time, so the cap holds in this router
            existing = await self.store.get(self.namespace, plan.object_name)
            if existing is not None:
                return self._adopt(plan, existing)
            count = await self.store.count_auto_created(self.namespace)
            if count >= self.settings.max_models:
                raise RouterError(
                    403,
                    f"The model `{plan.requested}` does not exist, and automatic setup refused to create "
                    f"it: {count} auto-created models exist in namespace {self.namespace!r}, the "
                    f"maximum is {self.settings.max_models}",
                    "auto_setup_limit_reached",
                    "model",
                )
            try:
                created = await self.store.create(plan.manifest)
            except Exists:
                existing = await self.store.get(self.namespace, plan.object_name)
                if existing is None:
                    raise RouterError(
                        503,
                        f"automatic setup of `{plan.requested}`: LocalModel {plan.object_name} "
                        "appeared and vanished; retry",
                        "auto_setup_failed",
                        None,
                        [(b"retry-after", str(self.retry_after).encode())],
                    ) from None
                return self._adopt(plan, existing)
        log.info(
            "automatic setup: created LocalModel %s/%s for model %r (%s) requested by %s",
            self.namespace,
            plan.object_name,
            plan.requested,
            plan.source,
            requester.client,
        )
        message = (
            f"Created by localmodel-router for a request for model {plan.requested!r} from "
            f"{requester.client} at {requester.at.strftime('%Y-%m-%dT%H:%M:%SZ')} (source {plan.source})"
        )
        try:
            await self.store.event(created, "AutoCreated", message)
        except Exception as exc:  # the model exists; a missing Event must not fail the request
            log.warning("automatic setup: could not record the Event on %s: %s", plan.object_name, exc)
        return plan.requested

    def _adopt(self, plan: Plan, existing: dict[str, Any]) -> str:
        """An object of the planned name exists: the same model asked for under another spelling (or
        by another router replica) is waited for; anything else is a conflict."""
        annotations = (existing.get("metadata") or {}).get("annotations") or {}
        if annotations.get(SOURCE) != plan.source:
            raise RouterError(
                409,
                f"automatic setup of `{plan.requested}`: LocalModel {self.namespace}/{plan.object_name} "
                "exists and was not created for it",
                "auto_setup_conflict",
                "model",
            )
        spec = existing.get("spec") or {}
        return str(spec.get("name") or plan.object_name)
