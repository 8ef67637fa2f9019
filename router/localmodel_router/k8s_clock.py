"""The idle clock router replicas share on Kubernetes: one Lease per scale-to-zero LocalModel.

The Lease's `renewTime` is the last time any replica used the model. Writes only move it forward (a
read, then a replace guarded by the resourceVersion, retried on conflict), so a replica publishing an
older use never hides a newer one. For the load autoscaler each replica also keeps one annotation,
`load.localmodel.dev/<replica>: "<average in flight>@<unix time>"`, merged in by a patch whose answer
carries everyone's; entries older than `LOAD_TTL` are ignored and removed. The Lease is owned by its
LocalModel and goes away with it. Leases rather than an annotation on the LocalModel: writing the
LocalModel would wake the operator each time.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from typing import Any

from localmodel_router.kube import Conflict, NotFound, RouterKube
from localmodel_router.table import ModelEntry
from localmodel_runtime.resource import API_VERSION, KIND

LEASE_PREFIX = "localmodel-last-use."
LOAD_PREFIX = "load.localmodel.dev/"
LOAD_TTL = 60.0
"""Seconds after which a replica's load report no longer counts (it stopped, or cannot write)."""
_CONFLICT_RETRIES = 3


def total_load(
    annotations: dict[str, str] | None, now: float, ttl: float = LOAD_TTL
) -> tuple[float, list[str]]:
    """The sum of the fresh load reports among `annotations`, and the keys of the stale ones."""
    total, stale = 0.0, []
    for key, value in (annotations or {}).items():
        if not key.startswith(LOAD_PREFIX):
            continue
        load, _, stamp = value.partition("@")
        try:
            fresh = now - float(stamp) <= ttl
            amount = float(load)
        except ValueError:
            fresh, amount = False, 0.0
        if fresh:
            total += amount
        else:
            stale.append(key)
    return total, stale


def lease_name(resource_name: str) -> str:
    """`localmodel-last-use.<LocalModel name>`, shortened with a digest past the 253-character limit."""
    name = LEASE_PREFIX + resource_name
    if len(name) <= 253:
        return name
    digest = hashlib.sha256(resource_name.encode()).hexdigest()[:16]
    return f"{name[: 253 - 17]}-{digest}"


class KubernetesUseClock:
    def __init__(self, client: Any, identity: str) -> None:
        self.kube = RouterKube(client)
        self.identity = identity
        """Written as the Lease's holderIdentity: which replica published last (the router's pod name)."""
        self.load_key = LOAD_PREFIX + hashlib.sha256(identity.encode()).hexdigest()[:16]
        self._stale: dict[str, list[str]] = {}
        """Lease name → load keys found stale last time, removed by the next patch."""

    def _lease(self, model: ModelEntry, stamp: datetime | None) -> Any:
        from lightkube.models.coordination_v1 import LeaseSpec
        from lightkube.models.meta_v1 import ObjectMeta, OwnerReference
        from lightkube.resources.coordination_v1 import Lease

        settings = model.settings
        assert settings.resource_name is not None
        owners = (
            [OwnerReference(API_VERSION, KIND, settings.resource_name, settings.uid)]
            if settings.uid
            else None
        )
        return Lease(
            metadata=ObjectMeta(
                name=lease_name(settings.resource_name),
                namespace=settings.namespace,
                labels={"app.kubernetes.io/managed-by": "localmodel-router"},
                ownerReferences=owners,
            ),
            spec=LeaseSpec(holderIdentity=self.identity, renewTime=stamp),
        )

    async def publish(self, model: ModelEntry, used_at: float) -> None:
        settings = model.settings
        if not settings.resource_name or settings.namespace is None:
            return
        from lightkube.resources.coordination_v1 import Lease

        stamp = datetime.fromtimestamp(used_at, UTC)
        name = lease_name(settings.resource_name)
        for _ in range(_CONFLICT_RETRIES):
            current = await self.kube.get(Lease, name, settings.namespace)
            if current is None:
                try:
                    await self.kube.create(self._lease(model, stamp))
                    return
                except Conflict:
                    continue  # another replica created it meanwhile: compare with theirs
            renewed = current.spec.renewTime if current.spec else None
            if renewed is not None and renewed >= stamp:
                return
            current.spec.renewTime = stamp
            current.spec.holderIdentity = self.identity
            try:
                await self.kube.replace(current)
                return
            except Conflict:
                pass  # another replica wrote in between; read theirs and compare again

    async def last_use(self, model: ModelEntry) -> float | None:
        settings = model.settings
        if not settings.resource_name or settings.namespace is None:
            return None
        from lightkube.resources.coordination_v1 import Lease

        lease = await self.kube.get(Lease, lease_name(settings.resource_name), settings.namespace)
        if lease is None:
            return None
        renewed = lease.spec.renewTime if lease.spec else None
        return renewed.timestamp() if renewed is not None else None

    def forget(self, model: ModelEntry) -> None:
        if model.settings.resource_name:
            self._stale.pop(lease_name(model.settings.resource_name), None)

    async def share_load(self, model: ModelEntry, load: float) -> float:
        settings = model.settings
        if not settings.resource_name or settings.namespace is None:
            return load
        from lightkube.resources.coordination_v1 import Lease

        name = lease_name(settings.resource_name)
        now = time.time()
        annotations: dict[str, str | None] = {key: None for key in self._stale.pop(name, [])}
        annotations[self.load_key] = f"{load:.3f}@{now:.0f}"
        try:
            lease = await self.kube.merge_patch(
                Lease, name, {"metadata": {"annotations": annotations}}, settings.namespace
            )
        except NotFound:
            lease = self._lease(model, None)
            lease.metadata.annotations = {self.load_key: annotations[self.load_key]}
            try:
                lease = await self.kube.create(lease)
            except Conflict:
                return load  # another replica created it just now: share next round
        total, stale = total_load(lease.metadata.annotations if lease.metadata else None, now)
        if stale:
            self._stale[name] = stale
        return total
