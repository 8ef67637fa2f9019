"""What the console shows of a model beyond the routing table: backend, device, the desired replicas,
the LocalModel's conditions and its recent Events.

Cluster mode reads them from the API (`ClusterDetails`: LocalModels and their Events, listed at most
once a second whatever the number of open pages); local mode from the router's local table file
(`LocalDetails`), whose entries may carry `backend`, `device`, `namespace` and `conditions` beside the
keys the routing table reads:

    models:
      - name: gemma-3-270m
        endpoints: ["127.0.0.1:40123"]
        backend: llama
        device: cpu
        conditions: [{type: Degraded, status: "True", reason: RuntimeExited, message: "..."}]
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from localmodel_router.kube import KubeError, RouterKube
from localmodel_runtime.resource import GROUP, KIND, PLURAL, VERSION, as_dict

log = logging.getLogger("localmodel.router")

JsonDict = dict[str, Any]


@dataclass
class ModelDetail:
    namespace: str | None = None
    resource: str | None = None
    backend: str | None = None
    device: str | None = None
    desired: int | None = None
    conditions: list[JsonDict] = field(default_factory=list)
    events: list[JsonDict] = field(default_factory=list)


@dataclass
class Snapshot:
    details: dict[str, ModelDetail]
    """API model name → what is known of it."""
    problems: list[str] = field(default_factory=list)
    """Why part of the picture is missing (e.g. Events not readable), in words."""


class DetailSource(Protocol):
    async def snapshot(self) -> Snapshot: ...


class NoDetails:
    async def snapshot(self) -> Snapshot:
        return Snapshot({})


def _condition(raw: Any) -> JsonDict | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        return None
    keep = ("type", "status", "reason", "message", "lastTransitionTime")
    return {key: str(raw[key]) for key in keep if raw.get(key) is not None}


def _conditions(raw: Any) -> list[JsonDict]:
    items = raw if isinstance(raw, list) else []
    return [c for c in map(_condition, items) if c is not None]


class LocalDetails:
    """The extra keys of the local table's entries (re-read when the file changes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._snapshot = Snapshot({})

    async def snapshot(self) -> Snapshot:
        try:
            stat = self.path.stat()
        except OSError as exc:
            return Snapshot({}, [f"cannot read the local table {self.path}: {exc.strerror or exc}"])
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._stamp = stamp
            self._snapshot = self._read()
        return self._snapshot

    def _read(self) -> Snapshot:
        try:
            data = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            return Snapshot({}, [f"cannot read the local table {self.path}: {exc}"])
        items = data.get("models") if isinstance(data, dict) else None
        details: dict[str, ModelDetail] = {}
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                continue
            endpoints = item.get("endpoints")
            details[item["name"]] = ModelDetail(
                namespace=_text(item.get("namespace")),
                backend=_text(item.get("backend")),
                device=_text(item.get("device")),
                desired=len(endpoints) if isinstance(endpoints, list) else None,
                conditions=_conditions(item.get("conditions")),
            )
        return Snapshot(details)


def _text(value: Any) -> str | None:
    return str(value) if value is not None and value != "" else None


def detail_from_object(obj: JsonDict) -> tuple[str, ModelDetail]:
    """The API model name and the console's view of one LocalModel object."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    deployment = spec.get("deployment") or {}
    desired = deployment.get("replicas")
    name = str(spec.get("name") or meta.get("name"))
    return name, ModelDetail(
        namespace=meta.get("namespace"),
        resource=meta.get("name"),
        backend=_text(status.get("backend") or spec.get("backend")),
        device=_text(status.get("device") or deployment.get("device")),
        desired=desired if isinstance(desired, int) else None,
        conditions=_conditions(status.get("conditions")),
    )


def event_view(obj: JsonDict) -> JsonDict:
    meta = obj.get("metadata") or {}
    when = (
        obj.get("lastTimestamp")
        or obj.get("eventTime")
        or obj.get("firstTimestamp")
        or meta.get("creationTimestamp")
    )
    return {
        "type": obj.get("type"),
        "reason": obj.get("reason"),
        "message": obj.get("message"),
        "count": obj.get("count") or 1,
        "time": str(when) if when is not None else None,
    }


class ClusterDetails:
    """LocalModels and their Events from the API, listed at most every `ttl` seconds and shared by every
    caller meanwhile. Events need `list` on events in the watched namespaces; without it the models are
    shown all the same and the problem is said once per snapshot."""

    def __init__(
        self, client: Any, namespaces: list[str | None], ttl: float = 1.0, events_per_model: int = 8
    ) -> None:
        from lightkube.generic_resource import create_namespaced_resource

        self.kube = RouterKube(client)
        self.namespaces = namespaces
        self.ttl = ttl
        self.events_per_model = events_per_model
        self.localmodel = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)
        self._snapshot: Snapshot | None = None
        self._taken = 0.0
        self._lock = asyncio.Lock()

    async def snapshot(self) -> Snapshot:
        async with self._lock:
            if self._snapshot is None or time.monotonic() - self._taken >= self.ttl:
                self._snapshot = await self._take()
                self._taken = time.monotonic()
            return self._snapshot

    async def _take(self) -> Snapshot:
        from lightkube import ALL_NS

        details: dict[str, ModelDetail] = {}
        by_object: dict[tuple[str, str], ModelDetail] = {}
        problems: list[str] = []
        for namespace in self.namespaces:
            where = ALL_NS if namespace is None else namespace
            try:
                async for obj in self.kube.list(self.localmodel, where):
                    name, detail = detail_from_object(as_dict(obj))
                    details[name] = detail
                    by_object[(detail.namespace or "", detail.resource or "")] = detail
            except Exception as exc:
                problems.append(f"cannot list LocalModels in {_where(namespace)}: {_reason(exc)}")
            try:
                await self._events(where, by_object)
            except Exception as exc:
                problems.append(f"cannot list Events in {_where(namespace)}: {_reason(exc)}")
        return Snapshot(details, problems)

    async def _events(self, where: str, by_object: dict[tuple[str, str], ModelDetail]) -> None:
        from lightkube.resources.core_v1 import Event

        found: dict[tuple[str, str], list[JsonDict]] = {}
        listing = self.kube.list(Event, where, fields={"involvedObject.kind": KIND})
        async for obj in listing:
            data = as_dict(obj)
            involved = data.get("involvedObject") or {}
            key = (involved.get("namespace") or "", involved.get("name") or "")
            if key in by_object:
                found.setdefault(key, []).append(event_view(data))
        for key, events in found.items():
            events.sort(key=lambda e: e["time"] or "", reverse=True)
            by_object[key].events = events[: self.events_per_model]


def _where(namespace: str | None) -> str:
    return "every namespace" if namespace is None else f"namespace {namespace!r}"


def _reason(exc: Exception) -> str:
    if isinstance(exc, KubeError):
        return f"{exc.message} (HTTP {exc.status})" if exc.status else exc.message
    return f"{exc.__class__.__name__}: {exc}"
