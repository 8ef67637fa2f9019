"""Kubernetes discovery: LocalModels and the EndpointSlices of their Services, and the scaler.

`ClusterState` is pure (event → table update) and unit-tested; `KubernetesDiscovery` only feeds it
from lightkube list+watch loops, one pair per namespace (or one for all namespaces). Requests go to
the pod endpoints the slices list, never to the Service's virtual IP, so the router can balance.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import Any

from localmodel_router.aliases import ClusterAliases
from localmodel_router.discovery import Discovery
from localmodel_router.k8s_clock import KubernetesUseClock
from localmodel_router.kube import RouterKube
from localmodel_router.table import ModelEntry, ModelSettings, ModelTable
from localmodel_runtime.config import DeploymentSpec, ModelConfigError, parse_deployment_spec
from localmodel_runtime.resource import GROUP, KIND, PLURAL, VERSION, as_dict
from localmodel_runtime.resource.claims import Claim, api_name, claim_of, created_seconds, holder
from localmodel_runtime.resource.runtime_token import runtime_token

log = logging.getLogger("localmodel.router")

SERVICE_LABEL = "kubernetes.io/service-name"
Key = tuple[str, str]  # (namespace, object name)


def model_settings(obj: dict[str, Any], runtime_key: bytes | None = None) -> tuple[str, ModelSettings]:
    """The API model name and the router's settings of one LocalModel object; with the release's
    `runtime_key`, the token its runtime pods require."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    name = api_name(obj)
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
    if runtime_key is not None:
        token = runtime_token(runtime_key, str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        settings = dataclasses.replace(settings, upstream_token=token)
    return name, settings


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


def forbidden(exc: Exception, kind: str, namespace: str | None) -> str | None:
    """A readable sentence when `exc` is the API server refusing the router a right (403), else None."""
    status = getattr(exc, "status", None)
    if getattr(status, "code", None) != 403:
        return None
    where = "every namespace" if namespace is None else f"namespace {namespace}"
    return (
        f"the router may not list and watch {kind}s in {where} ({getattr(status, 'message', exc)}): bind the "
        "chart's router rules there (helm value watchNamespaces) or watch only the namespaces it is bound in"
    )


class ClusterState:
    """What the watches have seen, merged into the routing table on every change.

    Several LocalModels may ask for one API name (in different namespaces): only the holder that
    `claims.holder` picks (the oldest) is in the table; the others' endpoints are never routed to.
    """

    def __init__(self, table: ModelTable, runtime_key: bytes | None = None) -> None:
        self.table = table
        self.runtime_key = runtime_key
        self.models: dict[Key, tuple[str, ModelSettings, int | None, Claim]] = {}
        self.slices: dict[Key, dict[str, list[tuple[str, bool]]]] = {}
        """(namespace, service name) → slice name → endpoints."""
        self.claimants: dict[str, set[Key]] = {}
        """API name → the LocalModels that ask for it."""
        self.aliases = ClusterAliases(table)

    def holder(self, name: str) -> Key | None:
        return holder(self.models[key][3] for key in self.claimants.get(name, ()))

    def _sync(self, key: Key) -> None:
        known = self.models.get(key)
        if known is None:
            return
        name, settings, created, _ = known
        if self.holder(name) != key:
            return
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
        previous = self.models.get(key)
        name = None if event == "DELETED" else api_name(obj)
        names = {n for n in (previous[0] if previous else None, name) if n is not None}
        holders = {n: self.holder(n) for n in names}
        if previous is not None:
            self.models.pop(key)
            self.claimants[previous[0]].discard(key)
            if not self.claimants[previous[0]]:
                del self.claimants[previous[0]]
        if name is not None:
            name, settings = model_settings(obj, self.runtime_key)
            created = created_seconds(meta)
            self.models[key] = (name, settings, None if created is None else int(created), claim_of(obj))
            self.claimants.setdefault(name, set()).add(key)
        for each in sorted(names):
            now = self.holder(each)
            if now != holders[each]:
                # Another LocalModel holds the name now (or none): its entry starts afresh, so no
                # endpoint, setting or counter of the previous holder's pods is carried over.
                self.table.remove_model(each)
                if now is not None:
                    self._sync(now)
            elif now == key:
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

    def __init__(
        self, namespaces: Sequence[str] | None, client: Any = None, runtime_key: bytes | None = None
    ) -> None:
        from lightkube import AsyncClient
        from lightkube.generic_resource import create_namespaced_resource
        from lightkube.resources.discovery_v1 import EndpointSlice

        self.client = client if client is not None else AsyncClient()
        self.namespaces: list[str | None] = list(namespaces) if namespaces else [None]
        self.runtime_key = runtime_key
        self.localmodel = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)
        self.endpointslice = EndpointSlice
        self.scaler = KubernetesScaler(self.client, self.localmodel)
        # The pod name tells router pods apart, the process id router processes on one host.
        identity = f"{os.environ.get('HOSTNAME') or 'localmodel-router'}:{os.getpid()}"
        self.clock = KubernetesUseClock(self.client, identity=identity)
        self._tasks: list[asyncio.Task[None]] = []
        self._pending = 0
        self._failing: set[tuple[str, str]] = set()
        """(kind, namespace) of the watches that failed and have not listed again since."""

    @property
    def healthy(self) -> bool:
        return not self._failing

    async def start(self, table: ModelTable) -> None:
        from lightkube import ALL_NS

        state = ClusterState(table, self.runtime_key)
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
                self._failing.discard((kind, watch_ns))
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
                self._failing.add((kind, watch_ns))  # /readyz is false until the relist succeeds
                refused = forbidden(exc, kind, namespace)
                if refused is not None:
                    log.error("%s; trying again in %gs", refused, delay)
                else:
                    log.warning(
                        "watching %s in %s failed (%s); listing again in %gs", kind, watch_ns, exc, delay
                    )
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
        self.kube = RouterKube(client)
        self.localmodel = localmodel

    async def _set(self, model: ModelEntry, replicas: int) -> None:
        settings = model.settings
        if not settings.resource_name or settings.namespace is None:
            return
        await self.kube.merge_patch(
            self.localmodel.Scale,
            settings.resource_name,
            {"spec": {"replicas": replicas}},
            settings.namespace,
        )

    async def scale_up(self, model: ModelEntry) -> None:
        await self._set(model, 1)

    async def scale_down(self, model: ModelEntry) -> None:
        await self._set(model, 0)

    async def scale_to(self, model: ModelEntry, replicas: int) -> None:
        await self._set(model, replicas)
