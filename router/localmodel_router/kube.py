"""The router's one door to the Kubernetes API, as `localmodel_operator.kube` is the operator's: lightkube's
async client with its `ApiError` turned into the router's own errors, so that the idle clock (Leases),
the scaler and automatic setup's store each say what a status means to them and nothing else.

lightkube is imported lazily: local mode never needs it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

from localmodel_router.errors import RouterException


class KubeError(RouterException):
    """An API request failed; `status` is the HTTP status and `message` the API server's reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class NotFound(KubeError):
    """404: the object is not there."""


class Conflict(KubeError):
    """409: the object exists already, or changed since it was read."""


@contextlib.contextmanager
def _api_errors() -> Iterator[None]:
    from lightkube.core.exceptions import ApiError

    try:
        yield
    except ApiError as exc:
        status, message = int(exc.status.code or 0), str(exc.status.message or exc)
        kind = NotFound if status == 404 else Conflict if status == 409 else KubeError
        raise kind(status, message) from exc


class RouterKube:
    """The calls the router makes, on one lightkube `AsyncClient` (the discovery's)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def get(self, resource: Any, name: str, namespace: str) -> Any | None:
        """The object, or None when there is none."""
        try:
            with _api_errors():
                return await self.client.get(resource, name, namespace=namespace)
        except NotFound:
            return None

    async def create(self, obj: Any, field_manager: str | None = None) -> Any:
        with _api_errors():
            if field_manager is None:
                return await self.client.create(obj)
            return await self.client.create(obj, field_manager=field_manager)

    async def replace(self, obj: Any) -> Any:
        with _api_errors():
            return await self.client.replace(obj)

    async def merge_patch(self, resource: Any, name: str, patch: dict[str, Any], namespace: str) -> Any:
        """A JSON merge patch (custom resources and their scale subresource take no strategic one)."""
        from lightkube.types import PatchType

        with _api_errors():
            return await self.client.patch(
                resource, name, patch, namespace=namespace, patch_type=PatchType.MERGE
            )

    async def list(self, resource: Any, namespace: str, **selectors: Any) -> AsyncIterator[Any]:
        with _api_errors():
            async for obj in self.client.list(resource, namespace=namespace, **selectors):
                yield obj
