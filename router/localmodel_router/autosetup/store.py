"""The cluster side of automatic setup, behind a protocol so the holding logic is unit-tested without an
API server; `KubernetesModelStore` is the one on the API."""

from __future__ import annotations

from typing import Any, Protocol

from localmodel_router.errors import RouterError, RouterException
from localmodel_router.kube import Conflict, KubeError, RouterKube
from localmodel_runtime.resource import GROUP, KIND, PLURAL, VERSION, as_dict
from localmodel_runtime.resource.events import local_model_event

from .resolution import AUTO_CREATED


class Exists(RouterException):
    """An object of that name exists already."""


class ModelStore(Protocol):
    async def get(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def count_auto_created(self, namespace: str) -> int: ...

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """The created object; raises `Exists` when the name is taken."""
        ...

    async def event(self, obj: dict[str, Any], reason: str, message: str) -> None: ...


class KubernetesModelStore:
    """`ModelStore` on lightkube's async client (the discovery's client)."""

    component = "localmodel-router"

    def __init__(self, client: Any) -> None:
        from lightkube.generic_resource import create_namespaced_resource

        self.kube = RouterKube(client)
        self.resource = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        obj = await self.kube.get(self.resource, name, namespace)
        return as_dict(obj) if obj is not None else None

    async def count_auto_created(self, namespace: str) -> int:
        listing = self.kube.list(self.resource, namespace, labels={AUTO_CREATED: "true"})
        return len([o async for o in listing])

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        from lightkube import codecs

        try:
            obj = await self.kube.create(codecs.from_dict(manifest), field_manager=self.component)
        except Conflict as exc:
            raise Exists(manifest["metadata"]["name"]) from exc
        except KubeError as exc:
            meta = manifest["metadata"]
            hint = (
                " (the router's ServiceAccount needs `create` on localmodels there: the chart binds it "
                "with router.autoSetup.enabled)"
                if exc.status == 403
                else ""
            )
            raise RouterError(
                500,
                f"automatic setup could not create LocalModel {meta['namespace']}/{meta['name']}: "
                f"{exc.message}{hint}",
                "auto_setup_failed",
            ) from exc
        return as_dict(obj)

    async def event(self, obj: dict[str, Any], reason: str, message: str) -> None:
        from lightkube import codecs

        event = local_model_event(obj, "Normal", reason, message, self.component)
        await self.kube.create(codecs.from_dict(event))
