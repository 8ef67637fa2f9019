"""The Event every component records on a LocalModel (the operator's transitions, the router's
automatic setup): one builder, so `kubectl describe lm` shows them all the same way."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event

from .crd import GROUP, KIND, VERSION


def local_model_event(owner: dict[str, Any], type_: str, reason: str, message: str, component: str) -> Event:
    """An Event about the LocalModel `owner` (a dict with `metadata`), from `component`."""
    meta = owner.get("metadata") or {}
    now = datetime.now(UTC)
    return Event(
        metadata=ObjectMeta(
            generateName=f"{meta.get('name', 'localmodel')}.", namespace=meta.get("namespace")
        ),
        involvedObject=ObjectReference(
            apiVersion=f"{GROUP}/{VERSION}",
            kind=KIND,
            name=meta.get("name"),
            namespace=meta.get("namespace"),
            uid=meta.get("uid"),
            resourceVersion=meta.get("resourceVersion"),
        ),
        reason=reason,
        message=message[:1024],  # the API server's limit
        type=type_,
        source=EventSource(component=component),
        reportingComponent=component,
        reportingInstance=component,
        firstTimestamp=now,
        lastTimestamp=now,
        count=1,
    )
