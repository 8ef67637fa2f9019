"""Scale from zero and idle scale-down, for models whose `minReplicas` is 0.

The router sees the traffic, so it owns both decisions: a request for a model with no ready endpoint
wakes it once (however many requests are waiting, and however long the pod takes: the wake holds until
the model has a ready endpoint or `wake_hold` seconds pass), and a model with no request for
`scaleDownDelaySeconds` is put back to zero.

With several router replicas each sees only its share of the traffic, so the idle clock is shared
(`UseClock`; on Kubernetes a Lease per model): a replica publishes the models it served, at most once per
`publish_interval` (and while its streams are still running), and one that finds a model idle asks the
clock before scaling it down. Models with `maxReplicas` above one also follow their load (autoscale.py),
on the same loop.
"""

from __future__ import annotations

import asyncio
import logging
import time

from localmodel_router.autoscale import LoadAutoscaler
from localmodel_router.table import ModelEntry, ModelTable, Scaler, UseClock

log = logging.getLogger("localmodel.router")


class ScaleToZero:
    def __init__(
        self,
        table: ModelTable,
        scaler: Scaler | None,
        check_interval: float = 1.0,
        wake_hold: float = 60.0,
        clock: UseClock | None = None,
        publish_interval: float = 30.0,
        autoscale_interval: float = 10.0,
        autoscale_window: float = 30.0,
    ) -> None:
        self.table = table
        self.scaler = scaler
        self.clock = clock
        self.publish_interval = publish_interval
        """Seconds between two publications of one model's use (capped at a quarter of its delay)."""
        self._unpublished: set[str] = set()
        """Models used here since their last publication."""
        self._published_at: dict[str, float] = {}
        self.check_interval = check_interval
        self.wake_hold = wake_hold
        """Seconds after a wake-up during which no other is sent while the model is still not ready
        (the cold-start bound: the patch returns at once, the pod takes much longer)."""
        self._waking: dict[str, float] = {}
        """Model name → monotonic time of its last wake-up, until it has a ready endpoint."""
        self._scaled_down: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.autoscaler = (
            LoadAutoscaler(table, scaler, clock, autoscale_interval, autoscale_window)
            if scaler is not None
            else None
        )
        self._deciding: asyncio.Task[None] | None = None

    def forget(self, name: str) -> None:
        """A model was deleted: drop what is kept about its use and scaling."""
        self._unpublished.discard(name)
        self._published_at.pop(name, None)
        self._waking.pop(name, None)
        self._scaled_down.discard(name)
        if self.autoscaler is not None:
            self.autoscaler.forget(name)

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
            elif await self._used_elsewhere(entry):
                self._scaled_down.discard(entry.name)
            else:
                await self.scaler.scale_down(entry)
        except Exception:
            log.exception("scaling %s %s failed", entry.name, "up" if up else "down")
            if up:
                self._waking.pop(entry.name, None)  # the next request tries again
            else:
                self._scaled_down.discard(entry.name)

    async def _used_elsewhere(self, entry: ModelEntry) -> bool:
        """Whether the shared clock says the model was used within its delay (by another replica); if so
        its idle time here counts from that use."""
        if self.clock is None:
            return False
        try:
            used_at = await self.clock.last_use(entry)
        except Exception as exc:  # no shared clock (e.g. RBAC without leases): decide alone
            log.warning("%s: reading the shared idle clock failed (%s); deciding alone", entry.name, exc)
            return False
        if used_at is None:
            return False
        age = max(time.time() - used_at, 0.0)
        if age >= entry.settings.scale_down_delay:
            return False
        entry.last_used = max(entry.last_used, time.monotonic() - age)
        log.info("%s: used %.0fs ago through another router replica; not scaling down", entry.name, age)
        return True

    def publish_uses(self, now: float | None = None) -> None:
        """Publish when this replica last used each scale-to-zero model it served since the last
        publication; a model with requests still in flight stays due, so long streams keep it awake."""
        if self.clock is None:
            return
        now = time.monotonic() if now is None else now
        for name in list(self._unpublished):
            entry = self.table.models.get(name)
            if entry is None or entry.settings.min_replicas != 0:
                self._unpublished.discard(name)
                continue
            interval = min(self.publish_interval, entry.settings.scale_down_delay / 4)
            if now - self._published_at.get(name, -interval) < interval:
                continue
            self._published_at[name] = now
            if not entry.in_flight:
                self._unpublished.discard(name)
            used = now if entry.in_flight else entry.last_used
            task = asyncio.get_running_loop().create_task(self._publish(entry, time.time() - (now - used)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _publish(self, entry: ModelEntry, used_at: float) -> None:
        assert self.clock is not None
        try:
            await self.clock.publish(entry, used_at)
        except Exception as exc:
            log.warning("%s: publishing its last use failed (%s)", entry.name, exc)
            self._unpublished.add(entry.name)  # try again at the next interval

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
        if self.clock is not None and entry.settings.min_replicas == 0:
            self._unpublished.add(entry.name)

    def autoscale(self, now: float | None = None) -> None:
        """Sample the load; at the autoscaler's interval start a round of decisions (one at a time)."""
        if self.autoscaler is None:
            return
        now = time.monotonic() if now is None else now
        self.autoscaler.sample(now)
        if (self._deciding is None or self._deciding.done()) and self.autoscaler.due(now):
            self._deciding = asyncio.get_running_loop().create_task(self.autoscaler.decide(now))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval)
            self.publish_uses()
            self.check_idle()
            self.autoscale()
