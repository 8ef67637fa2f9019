"""Kubernetes discovery: LocalModels and the EndpointSlices of their Services, and the scaler.

`ClusterState` is pure (event → table update) and unit-tested; `KubernetesDiscovery` only feeds it
from lightkube list+watch loops, one pair per namespace (or one for all namespaces). Requests go to
the pod endpoints the slices list, never to the Service's virtual IP, so the router can balance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence
from typing import Any

from localmodel_router.aliases import ClusterAliases
from localmodel_router.discovery import Discovery
from localmodel_router.k8s_clock import KubernetesUseClock
from localmodel_router.table import ModelEntry, ModelSettings, ModelTable
from localmodel_runtime.config import DeploymentSpec, ModelConfigError, parse_deployment_spec
from localmodel_runtime.resource import GROUP, KIND, PLURAL, VERSION, as_dict

log = logging.getLogger("localmodel.router")

SERVICE_LABEL = "kubernetes.io/service-name"
Key = tuple[str, str]  # (namespace, object name)


def _created(meta: dict[str, Any]) -> int | None:
    stamp = meta.get("creationTimestamp")
    if isinstance(stamp, str):
        from datetime import datetime

        with contextlib.suppress(ValueError):
            return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
    return None


def model_settings(obj: dict[str, Any]) -> tuple[str, ModelSettings]:
    """The API model name and the router's settings of one LocalModel object."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    name = spec.get("name") or meta.get("name")
    try:
        deployment = parse_deployment_spec(spec.get("deployment"))
    except ModelConfigError as exc:
        # The API server checks the CRD's schema, so only a CRD older than this router gets here.
        name_ns = f"{meta.get('namespace')}/{meta.get('name')}"
        log.warning("LocalModel %s: routing it with the defaults: %s", name_ns, exc)
        deployment = DeploymentSpec()
    settings = ModelSettings.from_deployment(
        deployment, meta.get("namespace"), meta.get("name"), meta.get("uid")
    )
    return str(name), settings


def slice_endpoints(obj: dict[str, Any]) -> list[tuple[str, bool]]:
    """`host:port` and readiness of every address of one EndpointSlice (port named `http`, else the
    first). A missing `ready` condition means ready, as the EndpointSlice API says to read it."""
    ports = obj.get("ports") or []
    chosen = next((p for p in ports if p.get("name") == "http"), ports[0] if ports else None)
    if not chosen or chosen.get("port") is None:
        return []
    port = chosen["port"]
    result: list[tuple[str, bool]] = []
    for endpoint in obj.get("endpoints") or []:
        conditions = endpoint.get("conditions") or {}
        ready = conditions.get("ready") is not False and conditions.get("terminating") is not True
        for address in endpoint.get("addresses") or []:
            host = f"[{address}]" if ":" in address else address
            result.append((f"{host}:{port}", ready))
    return result


class ClusterState:
    """What the watches have seen, merged into the routing table on every change."""

    def __init__(self, table: ModelTable) -> None:
        self.table = table
        self.models: dict[Key, tuple[str, ModelSettings, int | None]] = {}
        self.slices: dict[Key, dict[str, list[tuple[str, bool]]]] = {}
        """(namespace, service name) → slice name → endpoints."""
        self.aliases = ClusterAliases(table)

    def _sync(self, key: Key) -> None:
        known = self.models.get(key)
        if known is None:
            return
        name, settings, created = known
        self.table.upsert_model(name, settings, created)
        merged: dict[str, bool] = {}
        for endpoints in self.slices.get(key, {}).values():
            for address, ready in endpoints:
                merged[address] = merged.get(address, False) or ready
        self.table.set_endpoints(name, merged.items())

    def apply_localmodel(self, event: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace") or "", meta.get("name") or "")
        if self.aliases.apply(key, event, obj):
            event = "DELETED"  # an alias serves nothing itself: no model entry of its own
        previous = self.models.pop(key, None)
        name = None
        if event != "DELETED":
            name, settings = model_settings(obj)
            self.models[key] = (name, settings, _created(meta))
        # Keep the table entry (and its endpoints' counters) across updates; drop it when renamed.
        if previous is not None and previous[0] != name:
            self.table.remove_model(previous[0])
        self._sync(key)

    def apply_endpointslice(self, event: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        service = (meta.get("labels") or {}).get(SERVICE_LABEL)
        if not service:
            return
        key = (meta.get("namespace") or "", service)
        slices = self.slices.setdefault(key, {})
        if event == "DELETED":
            slices.pop(meta.get("name") or "", None)
        else:
            slices[meta.get("name") or ""] = slice_endpoints(obj)
        if not slices:
            self.slices.pop(key, None)
        self._sync(key)

    def replace(self, kind: str, namespace: str | None, objects: Sequence[dict[str, Any]]) -> None:
        """A fresh list of one kind in one namespace (None: all): forget what it no longer holds."""
        if kind == KIND:
            keep = {
                (
                    (o.get("metadata") or {}).get("namespace") or "",
                    (o.get("metadata") or {}).get("name") or "",
                )
                for o in objects
            }
            self.aliases.keep_only(namespace, keep)
            for key in [k for k in self.models if (namespace is None or k[0] == namespace) and k not in keep]:
                self.apply_localmodel("DELETED", {"metadata": {"namespace": key[0], "name": key[1]}})
            for obj in objects:
                self.apply_localmodel("MODIFIED", obj)
        else:
            for key in [k for k in self.slices if namespace is None or k[0] == namespace]:
                self.slices.pop(key, None)
            for obj in objects:
                meta = obj.get("metadata") or {}
                service = (meta.get("labels") or {}).get(SERVICE_LABEL)
                if service:
                    key = (meta.get("namespace") or "", service)
                    self.slices.setdefault(key, {})[meta.get("name") or ""] = slice_endpoints(obj)
            for key in [k for k in self.models if namespace is None or k[0] == namespace]:
                self._sync(key)


class KubernetesDiscovery(Discovery):
    """Watches LocalModels and EndpointSlices in `namespaces` (None: every namespace)."""

    def __init__(self, namespaces: Sequence[str] | None, client: Any = None) -> None:
        from lightkube import AsyncClient
        from lightkube.generic_resource import create_namespaced_resource
        from lightkube.resources.discovery_v1 import EndpointSlice

        self.client = client if client is not None else AsyncClient()
        self.namespaces: list[str | None] = list(namespaces) if namespaces else [None]
        self.localmodel = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)
        self.endpointslice = EndpointSlice
        self.scaler = KubernetesScaler(self.client, self.localmodel)
        # The pod name tells router pods apart, the process id router processes on one host.
        identity = f"{os.environ.get('HOSTNAME') or 'localmodel-router'}:{os.getpid()}"
        self.clock = KubernetesUseClock(self.client, identity=identity)
        self._tasks: list[asyncio.Task[None]] = []
        self._pending = 0

    async def start(self, table: ModelTable) -> None:
        from lightkube import ALL_NS

        state = ClusterState(table)
        loop = asyncio.get_running_loop()
        for namespace in self.namespaces:
            for resource, kind in ((self.localmodel, KIND), (self.endpointslice, "EndpointSlice")):
                self._pending += 1
                watch_ns = ALL_NS if namespace is None else namespace
                coro = self._run(state, resource, kind, watch_ns, namespace)
                self._tasks.append(loop.create_task(coro))

    async def _run(
        self, state: ClusterState, resource: Any, kind: str, watch_ns: str, namespace: str | None
    ) -> None:
        """List, then watch from the list's version; on any watch failure, list again (a relist is the
        only way to learn about deletions missed while disconnected)."""
        synced = False
        delay = 1.0
        while True:
            try:
                listing = self.client.list(resource, namespace=watch_ns)
                objects = [as_dict(o) async for o in listing]
                state.replace(kind, namespace, objects)
                if not synced:
                    synced = True
                    self._pending -= 1
                    if self._pending == 0:
                        state.table.synced = True
                delay = 1.0
                watch = self.client.watch(
                    resource, namespace=watch_ns, resource_version=listing.resourceVersion
                )
                async for event, obj in watch:
                    if kind == KIND:
                        state.apply_localmodel(event, as_dict(obj))
                    else:
                        state.apply_endpointslice(event, as_dict(obj))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("watching %s in %s failed (%s); listing again in %gs", kind, watch_ns, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


class KubernetesScaler:
    """Scale from zero and back through the LocalModel's scale subresource (as `kubectl scale`)."""

    def __init__(self, client: Any, localmodel: Any) -> None:
        self.client = client
        self.localmodel = localmodel

    async def _set(self, model: ModelEntry, replicas: int) -> None:
        settings = model.settings
        if not settings.resource_name or settings.namespace is None:
            return
        from lightkube.types import PatchType

        # Custom resources (and their scale subresource) take no strategic merge patch: merge it is.
        await self.client.patch(
            self.localmodel.Scale,
            settings.resource_name,
            {"spec": {"replicas": replicas}},
            namespace=settings.namespace,
            patch_type=PatchType.MERGE,
        )

    async def scale_up(self, model: ModelEntry) -> None:
        await self._set(model, 1)

    async def scale_down(self, model: ModelEntry) -> None:
        await self._set(model, 0)

    async def scale_to(self, model: ModelEntry, replicas: int) -> None:
        await self._set(model, replicas)
