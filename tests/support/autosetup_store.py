"""A `ModelStore` without an API server, for automatic setup's unit tests and the console's install
endpoint."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from localmodel_router.autosetup import AUTO_CREATED, Exists
from localmodel_router.table import ModelSettings, ModelTable


class FakeStore:
    """The API server as far as automatic setup sees it."""

    def __init__(self, table: ModelTable | None = None, ready: str | None = None) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []
        self.events: list[tuple[str, str, str]] = []
        self.table = table
        self.ready = ready
        """When set, a created model shows up in `table` with this ready endpoint (a watch, a pod)."""
        self.gate = asyncio.Event()
        self.gate.set()

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((namespace, name))

    async def count_auto_created(self, namespace: str) -> int:
        return sum(
            1
            for (ns, _), o in self.objects.items()
            if ns == namespace and o["metadata"].get("labels", {}).get(AUTO_CREATED) == "true"
        )

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        await self.gate.wait()
        meta = manifest["metadata"]
        key = (meta["namespace"], meta["name"])
        if key in self.objects:
            raise Exists(meta["name"])
        obj = copy.deepcopy(manifest)
        obj["metadata"]["uid"] = f"uid-{len(self.created)}"
        self.objects[key] = obj
        self.created.append(obj)
        if self.table is not None and self.ready is not None:
            name = obj["spec"]["name"]
            self.table.upsert_model(name, ModelSettings(min_replicas=0))
            self.table.set_endpoints(name, [(self.ready, True)])
        return obj

    async def event(self, obj: dict[str, Any], reason: str, message: str) -> None:
        self.events.append((obj["metadata"]["name"], reason, message))
