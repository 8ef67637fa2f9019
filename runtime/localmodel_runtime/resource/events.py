"""The Event every component records on a LocalModel (the operator's transitions, the router's
automatic setup): one builder, so `kubectl describe lm` shows them all the same way.

It returns the Event as a plain manifest, so the shared core needs no Kubernetes client; the callers
turn it into their client's object (`lightkube.codecs.from_dict`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from . import API_VERSION, KIND

MESSAGE_LIMIT = 1024
"""The API server's limit on an Event's message."""


def local_model_event(
    owner: dict[str, Any], type_: str, reason: str, message: str, component: str
) -> dict[str, Any]:
    """An Event about the LocalModel `owner` (a dict with `metadata`), from `component`."""
    meta = owner.get("metadata") or {}
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    involved = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "uid": meta.get("uid"),
        "resourceVersion": meta.get("resourceVersion"),
    }
    metadata = {"generateName": f"{meta.get('name', 'localmodel')}.", "namespace": meta.get("namespace")}
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {k: v for k, v in metadata.items() if v is not None},
        "involvedObject": {k: v for k, v in involved.items() if v is not None},
        "reason": reason,
        "message": message[:MESSAGE_LIMIT],
        "type": type_,
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": component,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
