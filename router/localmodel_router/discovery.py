"""What feeds the routing table: a local file (`local_table.py`) or the cluster (`k8s.py`)."""

from __future__ import annotations

from localmodel_router.table import ModelTable, Scaler, UseClock


class Discovery:
    """Started in the app's lifespan, stopped at shutdown."""

    scaler: Scaler | None = None
    clock: UseClock | None = None
    """The idle clock shared with the other router replicas, where there can be several."""

    @property
    def healthy(self) -> bool:
        """Whether the source is being followed now (a Kubernetes watch that failed and has not listed
        again is not): while it is not, the table may be stale and `/readyz` answers 503."""
        return True

    async def start(self, table: ModelTable) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError
