"""Scale from zero and idle scale-down, for models whose `minReplicas` is 0.

The router sees the traffic, so it owns both decisions: a request for a model with no ready endpoint
wakes it once (however many requests are waiting, and however long the pod takes: the wake holds until
the model has a ready endpoint or `wake_hold` seconds pass), and a model with no request for
`scaleDownDelaySeconds` is put back to zero. Replicas above one are the autoscaler's business.
"""

from __future__ import annotations

import asyncio
import logging
import time

from localmodel_router.table import ModelEntry, ModelTable, Scaler

log = logging.getLogger("localmodel.router")


class ScaleManager:
    def __init__(
        self, table: ModelTable, scaler: Scaler | None, check_interval: float = 1.0, wake_hold: float = 60.0
    ) -> None:
        self.table = table
        self.scaler = scaler
        self.check_interval = check_interval
        self.wake_hold = wake_hold
        """Seconds after a wake-up during which no other is sent while the model is still not ready
        (the cold-start bound: the patch returns at once, the pod takes much longer)."""
        self._waking: dict[str, float] = {}
        """Model name → monotonic time of its last wake-up, until it has a ready endpoint."""
        self._scaled_down: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def can_wake(self, entry: ModelEntry) -> bool:
        return self.scaler is not None and entry.settings.min_replicas == 0

    def wake(self, entry: ModelEntry) -> bool:
        """Ask the scaler for one replica unless a wake-up is already under way; True when this call
        started it."""
        if self.scaler is None:
            return False
        now = time.monotonic()
        since = self._waking.get(entry.name)
        if since is not None and now - since < self.wake_hold:
            return False
        self._waking[entry.name] = now
        task = asyncio.get_running_loop().create_task(self._scale(entry, up=True))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _scale(self, entry: ModelEntry, up: bool) -> None:
        assert self.scaler is not None
        try:
            if up:
                self._scaled_down.discard(entry.name)
                await self.scaler.scale_up(entry)
            else:
                await self.scaler.scale_down(entry)
        except Exception:
            log.exception("scaling %s %s failed", entry.name, "up" if up else "down")
            if up:
                self._waking.pop(entry.name, None)  # the next request tries again
            else:
                self._scaled_down.discard(entry.name)

    def idle_models(self, now: float) -> list[ModelEntry]:
        """Models to put back to zero: may scale to zero, have replicas, and saw no request lately."""
        due: list[ModelEntry] = []
        for entry in self.table.models.values():
            if entry.settings.min_replicas != 0 or not entry.endpoints or entry.in_flight:
                continue
            if entry.name in self._scaled_down:
                continue
            if entry.name in self._waking and not entry.ready_endpoints:
                continue  # woken and still starting
            if now - entry.last_used >= entry.settings.scale_down_delay:
                due.append(entry)
        return due

    def check_idle(self, now: float | None = None) -> None:
        if self.scaler is None:
            return
        for entry in self.idle_models(time.monotonic() if now is None else now):
            self._scaled_down.add(entry.name)
            self._waking.pop(entry.name, None)
            log.info("%s: idle for %gs, scaling to zero", entry.name, entry.settings.scale_down_delay)
            task = asyncio.get_running_loop().create_task(self._scale(entry, up=False))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def touched(self, entry: ModelEntry) -> None:
        """A request arrived: the model is no longer idle (and no longer scaled down); a model that is
        ready again may be woken again once it is back at zero."""
        self._scaled_down.discard(entry.name)
        if entry.ready_endpoints:
            self._waking.pop(entry.name, None)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval)
            self.check_idle()
