"""The only module that talks to the Kubernetes API.

Everything goes through lightkube's async client. Children are written with server-side apply under one
field manager, so applying the same manifest twice is a no-op on the server (no new resourceVersion) and
fields other managers own (an HPA's replicas on something else, kubectl annotations) are left alone.
Client errors never leak: they become :class:`KubeError` with the API's status code and message.
"""

from __future__ import annotations

import logging
from typing import Any

from lightkube import ALL_NS, AsyncClient, codecs
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from localmodel_operator.errors import OperatorException
from localmodel_runtime.resource import GROUP, KIND, PLURAL, VERSION, as_dict
from localmodel_runtime.resource.events import local_model_event

LocalModelResource = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)
# Registered so that InferencePool manifests can be applied like the other children.
InferencePoolResource = create_namespaced_resource(
    "inference.networking.k8s.io", "v1", "InferencePool", "inferencepools"
)
COMPONENT = "localmodel-operator"
SPEC_NAME_FIELD = "spec.name"
"""The CRD's selectable field (crd.py) by which the LocalModels asking for one API name are found."""
BAD_REQUEST = 400
log = logging.getLogger(__name__)


class KubeError(OperatorException):
    """An API request failed; `status` is the HTTP status (0 when the server was not reached)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class NotFound(KubeError):
    pass


def _wrap(exc: ApiError) -> KubeError:
    status = exc.status
    cls = NotFound if status.code == 404 else KubeError
    return cls(f"{status.reason or 'Error'}: {status.message}", status.code or 0)


class Kube:
    """A thin async facade over the API for what the operator does."""

    def __init__(self, field_manager: str, client: AsyncClient | None = None) -> None:
        self.field_manager = field_manager
        self.client = client or AsyncClient(field_manager=field_manager)
        self.spec_name_selectable = True

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply, forcing ownership of the fields we set (we are their only writer)."""
        try:
            obj = await self.client.apply(
                codecs.from_dict(manifest), field_manager=self.field_manager, force=True
            )
        except ApiError as exc:
            raise _wrap(exc) from exc
        return as_dict(obj)

    async def get_object(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """The object of `manifest`'s kind, namespace and name as the server has it; None when absent."""
        meta = manifest["metadata"]
        resource: Any = type(codecs.from_dict(manifest))  # ConfigMap, Service, ... (lightkube's class)
        try:
            obj = await self.client.get(resource, meta["name"], namespace=meta.get("namespace"))
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise _wrap(exc) from exc
        return as_dict(obj)

    async def has_crd(self, name: str) -> bool:
        """Whether the CustomResourceDefinition `name` (`<plural>.<group>`) is installed."""
        try:
            await self.client.get(CustomResourceDefinition, name)
        except ApiError as exc:
            if exc.status.code == 404:
                return False
            raise _wrap(exc) from exc
        return True

    async def create_if_absent(self, manifest: dict[str, Any]) -> bool:
        """Create an object unless one of that name exists; True when it was created."""
        try:
            await self.client.create(codecs.from_dict(manifest), field_manager=self.field_manager)
        except ApiError as exc:
            if exc.status.code == 409:
                return False
            raise _wrap(exc) from exc
        return True

    async def get_localmodel(self, namespace: str, name: str) -> dict[str, Any]:
        try:
            return as_dict(await self.client.get(LocalModelResource, name, namespace=namespace))
        except ApiError as exc:
            raise _wrap(exc) from exc

    async def list_localmodels(
        self, namespace: str | None, fields: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """The LocalModels in `namespace` (None: in all namespaces), only those matching the field
        selector `fields` when given."""
        try:
            scope = ALL_NS if namespace is None else namespace
            listing = self.client.list(LocalModelResource, namespace=scope, fields=fields)
            return [as_dict(o) async for o in listing]
        except ApiError as exc:
            raise _wrap(exc) from exc

    async def list_name_claimants(self, namespace: str | None, name: str) -> list[dict[str, Any]]:
        """The LocalModels that may ask for the API model name `name`: those named `name` and those
        whose `spec.name` is `name` (a superset: callers compare `claims.api_name`).

        Two field-selected lists, so checking one model's name costs the same with 10 or 10,000
        models (listing the whole scope per reconcile made 2,000 new models cost ~4 million objects
        read). `spec.name` is a selectable field of the CRD (Kubernetes 1.31+); where the API server
        does not support it (an older cluster, or a CRD installed before) the whole scope is listed,
        as it was before selectable fields, and that choice is kept for the process's life."""
        if self.spec_name_selectable:
            try:
                named = await self.list_localmodels(namespace, {"metadata.name": name})
                return named + await self.list_localmodels(namespace, {SPEC_NAME_FIELD: name})
            except KubeError as exc:
                if exc.status != BAD_REQUEST:
                    raise
                log.warning("%s is not selectable here (%s): listing every LocalModel", SPEC_NAME_FIELD, exc)
                self.spec_name_selectable = False
        return await self.list_localmodels(namespace)

    async def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return as_dict(await self.client.get(Deployment, name, namespace=namespace))
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise _wrap(exc) from exc

    async def list_pods(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        try:
            selector: dict[str, Any] = dict(labels)
            return [as_dict(p) async for p in self.client.list(Pod, namespace=namespace, labels=selector)]
        except ApiError as exc:
            raise _wrap(exc) from exc

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """Merge `status` into the LocalModel's status; the LocalModel as the server then has it."""
        try:
            obj = await self.client.patch(
                LocalModelResource.Status,
                name,
                {"status": status},
                namespace=namespace,
                patch_type=PatchType.MERGE,
            )
        except ApiError as exc:
            raise _wrap(exc) from exc
        return as_dict(obj)

    async def event(self, owner: dict[str, Any], kind: str, reason: str, message: str) -> None:
        """Record an Event on the LocalModel (`kubectl describe lm` shows it)."""
        event = codecs.from_dict(local_model_event(owner, kind, reason, message, COMPONENT))
        try:
            await self.client.create(event)
        except ApiError as exc:
            raise _wrap(exc) from exc

    async def close(self) -> None:
        await self.client.close()
