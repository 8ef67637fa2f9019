"""kopf handlers: thin, they only route events to the Reconciler."""

from __future__ import annotations

from typing import Any

import kopf

from localmodel_runtime.resource import GROUP, PLURAL, VERSION

from .builders import MODEL_LABEL
from .kopf_storage import MemoryDiffBase
from .reconcile import Reconciler, RetryLater

MANAGED = {"app.kubernetes.io/managed-by": "localmodel-operator"}


def register(reconciler: Reconciler, registry: kopf.OperatorRegistry, diffbase: MemoryDiffBase) -> None:
    """Register the handlers against `registry` (a fresh one per operator run: no module-level state)."""

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry)
    async def reconcile(body: kopf.Body, **_: Any) -> None:
        try:
            await reconciler.reconcile(dict(body))
        except RetryLater as exc:
            raise kopf.TemporaryError(str(exc), delay=exc.delay) from None

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def localmodel_event(body: kopf.Body, type: str | None, **_: Any) -> None:
        if type == "DELETED":
            diffbase.forget(dict(body))
            await reconciler.released(dict(body))
        else:
            reconciler.observed(dict(body))

    @kopf.on.event("apps", "v1", "deployments", labels=MANAGED, registry=registry)
    async def deployment_changed(
        body: kopf.Body, meta: kopf.Meta, namespace: str | None, type: str | None, **_: Any
    ) -> None:
        owner = meta.get("labels", {}).get(MODEL_LABEL)
        if owner and namespace:
            deployment = None if type == "DELETED" else dict(body)
            await reconciler.deployment_changed(namespace, owner, deployment)

    @kopf.on.event("", "v1", "pods", labels=MANAGED, registry=registry)
    async def pod_changed(meta: kopf.Meta, namespace: str | None, **_: Any) -> None:
        owner = meta.get("labels", {}).get(MODEL_LABEL)
        if owner and namespace:
            await reconciler.refresh(namespace, owner)
