"""Replicas that follow the load, for models with `autoscaling.maxReplicas` above one (as KubeAI does).

Every second the router samples the requests it has in flight to each such model; every `interval`
seconds it averages the last `window` seconds, adds what the other router replicas report (the shared
clock's Lease carries one average per replica), and wants `ceil(load / targetInFlight)` replicas,
between `max(minReplicas, 1)` and `maxReplicas`. More replicas are asked for at once; fewer only once the
load has stayed low for `scaleDownDelaySeconds`, so a lull does not throw away warm pods. A model at
zero replicas is left to the wake-up path (the first request scales it to one).
"""

from __future__ import annotations

import collections
import logging
import math

from localmodel_router.table import ModelEntry, ModelTable, Scaler, UseClock

log = logging.getLogger("localmodel.router")

DEFAULT_TARGET_IN_FLIGHT = 4.0


def autoscaled(entry: ModelEntry) -> bool:
    return (entry.settings.max_replicas or 0) > 1


def desired_replicas(entry: ModelEntry, load: float) -> int:
    """Replicas for `load` requests in flight: one per `targetInFlight`, within the model's bounds."""
    settings = entry.settings
    assert settings.max_replicas is not None
    lowest = max(settings.min_replicas or 1, 1)
    target = settings.target_in_flight or DEFAULT_TARGET_IN_FLIGHT
    return min(max(math.ceil(load / target - 1e-9), lowest), settings.max_replicas)


class LoadAutoscaler:
    def __init__(
        self,
        table: ModelTable,
        scaler: Scaler,
        clock: UseClock | None = None,
        interval: float = 10.0,
        window: float = 30.0,
    ) -> None:
        self.table = table
        self.scaler = scaler
        self.clock = clock
        self.interval = interval
        self.window = window
        self._samples: dict[str, collections.deque[tuple[float, int]]] = {}
        self._low_since: dict[str, float] = {}
        """Model → when the load first wanted fewer replicas than it has (the scale-down delay's start)."""
        self._last_decision = -math.inf

    def sample(self, now: float) -> None:
        for entry in self.table.models.values():
            if not autoscaled(entry):
                self._samples.pop(entry.name, None)
                continue
            samples = self._samples.setdefault(entry.name, collections.deque())
            samples.append((now, entry.in_flight))
            while samples and now - samples[0][0] > self.window:
                samples.popleft()

    def forget(self, name: str) -> None:
        self._samples.pop(name, None)
        self._low_since.pop(name, None)

    def own_load(self, name: str) -> float:
        samples = self._samples.get(name)
        return sum(n for _, n in samples) / len(samples) if samples else 0.0

    def due(self, now: float) -> bool:
        if now - self._last_decision < self.interval:
            return False
        self._last_decision = now
        return True

    async def decide(self, now: float) -> None:
        """One round of decisions; a failure for one model is logged and the others go on."""
        for entry in list(self.table.models.values()):
            if not autoscaled(entry) or entry.name not in self._samples:
                continue
            try:
                await self._decide(entry, now)
            except Exception as exc:
                log.warning("%s: autoscaling failed (%s)", entry.name, exc)

    async def _decide(self, entry: ModelEntry, now: float) -> None:
        current = entry.settings.replicas if entry.settings.replicas is not None else len(entry.endpoints)
        if current == 0:
            return  # at zero the first request wakes it
        load = self.own_load(entry.name)
        if self.clock is not None:
            load = await self.clock.share_load(entry, load)
        wanted = desired_replicas(entry, load)
        if wanted > current:
            self._low_since.pop(entry.name, None)
            log.info(
                "%s: %.1f requests in flight, scaling %d → %d replicas", entry.name, load, current, wanted
            )
            await self.scaler.scale_to(entry, wanted)
        elif wanted < current:
            since = self._low_since.setdefault(entry.name, now)
            if now - since >= entry.settings.scale_down_delay:
                self._low_since.pop(entry.name, None)
                log.info(
                    "%s: %.1f requests in flight for %.0fs, scaling %d → %d replicas",
                    entry.name,
                    load,
                    now - since,
                    current,
                    wanted,
                )
                await self.scaler.scale_to(entry, wanted)
        else:
            self._low_since.pop(entry.name, None)
