"""The routing table: model name → endpoints with readiness, and per-model settings.

Discovery sources (a local file, Kubernetes) write it; the proxy reads it on every request, so reads
are plain attribute access. Endpoint objects survive updates that keep their address, which keeps
their in-flight counters (the balancer's only state) correct across discovery churn.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from localmodel_runtime.config.deployment import (
    DEFAULT_LOAD_BALANCING,
    DEFAULT_SCALE_DOWN_DELAY_SECONDS,
    DeploymentSpec,
    LoadBalancing,
)


def split_address(address: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` → (host, port); ValueError when malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"endpoint {address!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"endpoint {address!r}: port out of range")
    return host, number


@dataclass(eq=False)
class Endpoint:
    address: str
    ready: bool = True
    in_flight: int = 0
    host: str = field(init=False)
    port: int = field(init=False)

    def __post_init__(self) -> None:
        self.host, self.port = split_address(self.address)


@dataclass(frozen=True)
class ModelSettings:
    """What the router reads of a model's `spec.deployment`, and where the LocalModel object is."""

    strategy: LoadBalancing = DEFAULT_LOAD_BALANCING
    min_replicas: int | None = None
    """0 means the model may scale to zero: the router wakes it and owns its idle timer."""
    scale_down_delay: float = float(DEFAULT_SCALE_DOWN_DELAY_SECONDS)
    namespace: str | None = None
    resource_name: str | None = None
    """The LocalModel object's name (the API name may differ), for the Kubernetes scaler."""
    uid: str | None = None
    """The LocalModel object's uid: what the router's objects for it name as their owner."""
    max_replicas: int | None = None
    """Above one: the router adds and removes replicas with the load (autoscale.py)."""
    target_in_flight: float | None = None
    """Requests in flight per replica the load autoscaler aims for."""
    replicas: int | None = None
    """The replicas the LocalModel asks for now (`spec.deployment.replicas`)."""
    upstream_token: str | None = None
    """Sent to the model's runtime pods as `Authorization: Bearer` (runtime tokens, runtime_token.py)."""

    @classmethod
    def from_deployment(
        cls,
        deployment: DeploymentSpec,
        namespace: str | None = None,
        resource_name: str | None = None,
        uid: str | None = None,
    ) -> ModelSettings:
        """The settings a validated `spec.deployment` gives, the schema's defaults where it is silent;
        `namespace`, `resource_name` and `uid` locate the LocalModel in a cluster."""
        autoscaling = deployment.autoscaling
        delay = autoscaling.scale_down_delay_seconds if autoscaling else None
        target = autoscaling.target_in_flight if autoscaling else None
        return cls(
            strategy=deployment.load_balancing or DEFAULT_LOAD_BALANCING,
            min_replicas=autoscaling.min_replicas if autoscaling else None,
            scale_down_delay=float(DEFAULT_SCALE_DOWN_DELAY_SECONDS if delay is None else delay),
            namespace=namespace,
            resource_name=resource_name,
            uid=uid,
            max_replicas=autoscaling.max_replicas if autoscaling else None,
            target_in_flight=float(target) if target is not None else None,
            replicas=deployment.replicas,
        )


@dataclass(eq=False)
class ModelEntry:
    name: str
    settings: ModelSettings = field(default_factory=ModelSettings)
    endpoints: list[Endpoint] = field(default_factory=list)
    created: int = field(default_factory=lambda: int(time.time()))
    ready_endpoints: list[Endpoint] = field(default_factory=list)
    """Kept in step with `endpoints` by `ModelTable` so the hot path does not filter per request."""
    in_flight: int = 0
    last_used: float = field(default_factory=time.monotonic)


class Scaler(Protocol):
    """Changes how many replicas a model has: Kubernetes patches the scale subresource, local mode
    starts or stops a process."""

    async def scale_up(self, model: ModelEntry) -> None: ...

    async def scale_down(self, model: ModelEntry) -> None: ...

    async def scale_to(self, model: ModelEntry, replicas: int) -> None: ...


class UseClock(Protocol):
    """When a model was last used, shared by every router replica: without it each replica's idle timer
    would scale a model to zero while another replica is still serving it. Times are wall-clock
    seconds (replicas share no monotonic clock)."""

    async def publish(self, model: ModelEntry, used_at: float) -> None: ...

    async def last_use(self, model: ModelEntry) -> float | None: ...

    async def share_load(self, model: ModelEntry, load: float) -> float:
        """Publish this replica's average requests in flight to `model`; the sum over every replica."""
        ...

    def forget(self, model: ModelEntry) -> None:
        """The model was deleted: drop what is kept about it."""
        ...


class ModelTable:
    def __init__(self) -> None:
        self.models: dict[str, ModelEntry] = {}
        self.aliases: dict[str, str] = {}
        """LocalAI's `alias:` models: extra name → the name of the model that answers for it."""
        self.synced = False
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self.model_removed: list[Callable[[ModelEntry], None]] = []
        """Called with a model that left the table: whoever keeps state per model forgets it."""
        self.endpoints_removed: list[Callable[[ModelEntry, list[Endpoint]], None]] = []
        """Called with a model and the endpoints it lost (a pod gone, or the model itself)."""

    def get(self, name: str) -> ModelEntry | None:
        return self.models.get(name)

    # -- aliases (LocalAI's `alias:`): names that are answered by another model ------------------

    def resolve(self, name: str) -> ModelEntry | None:
        """The model that answers to `name`: its own, else the target of an alias of that name (a
        model's own name wins over an alias, as the older claim on a name does)."""
        entry = self.models.get(name)
        if entry is None and name in self.aliases:
            entry = self.models.get(self.aliases[name])
        return entry

    def set_alias(self, name: str, target: str | None) -> None:
        """Make `name` answer as `target` (None: forget the alias); one hop, as in LocalAI."""
        if target is None or target == name:
            self.aliases.pop(name, None)
        else:
            self.aliases[name] = target

    def replace_aliases(self, aliases: dict[str, str]) -> None:
        self.aliases = {name: target for name, target in aliases.items() if name != target}

    def upsert_model(self, name: str, settings: ModelSettings, created: int | None = None) -> ModelEntry:
        entry = self.models.get(name)
        if entry is None:
            entry = ModelEntry(name, settings)
            if created is not None:
                entry.created = created
            self.models[name] = entry
        else:
            entry.settings = settings
        self._notify(entry)
        return entry

    def remove_model(self, name: str) -> None:
        entry = self.models.pop(name, None)
        if entry is not None:
            self._notify(entry)
            gone, entry.endpoints, entry.ready_endpoints = entry.endpoints, [], []
            if gone:
                for endpoint_hook in self.endpoints_removed:
                    endpoint_hook(entry, gone)
            for model_hook in self.model_removed:
                model_hook(entry)

    def set_endpoints(self, name: str, endpoints: Iterable[tuple[str, bool]]) -> None:
        """Replace a model's endpoints; known addresses keep their Endpoint object (and counters)."""
        entry = self.models.get(name)
        if entry is None:
            return
        known = {e.address: e for e in entry.endpoints}
        fresh: list[Endpoint] = []
        for address, ready in endpoints:
            endpoint = known.get(address)
            if endpoint is None:
                endpoint = Endpoint(address, ready)
            endpoint.ready = ready
            fresh.append(endpoint)
        gone = [e for e in entry.endpoints if e not in fresh]
        entry.endpoints = fresh
        entry.ready_endpoints = [e for e in fresh if e.ready]
        self._notify(entry)
        if gone:
            for hook in self.endpoints_removed:
                hook(entry, gone)

    def replace_all(self, models: dict[str, tuple[ModelSettings, list[tuple[str, bool]]]]) -> None:
        """Make the table equal to `models` (a reloaded local table, a relisted cluster)."""
        for name in list(self.models):
            if name not in models:
                self.remove_model(name)
        for name, (settings, endpoints) in models.items():
            self.upsert_model(name, settings)
            self.set_endpoints(name, endpoints)

    async def wait_ready(
        self,
        name: str,
        timeout: float,  # noqa: ASYNC109
        missing_ok: bool = False,
    ) -> ModelEntry | None:
        """Wait until `name` has a ready endpoint (or is gone); None after `timeout` seconds. With
        `missing_ok` an absent model is waited for too (one being created)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            entry = self.models.get(name)
            if (entry is None and not missing_ok) or (entry is not None and entry.ready_endpoints):
                return entry
            left = deadline - loop.time()
            if left <= 0:
                return None
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(name, []).append(waiter)
            try:
                await asyncio.wait_for(waiter, left)
            except TimeoutError:
                return None
            finally:
                waiters = self._waiters.get(name)
                if waiters is not None and waiter in waiters:
                    waiters.remove(waiter)
                    if not waiters:
                        del self._waiters[name]

    def _notify(self, entry: ModelEntry) -> None:
        for waiter in self._waiters.pop(entry.name, []):
            if not waiter.done():
                waiter.set_result(None)
