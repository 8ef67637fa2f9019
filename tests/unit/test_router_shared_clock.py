"""The idle clock router replicas share: one replica's traffic keeps another from scaling a model down."""

from __future__ import annotations

import asyncio
import time

import pytest

from localmodel_router.k8s_clock import LEASE_PREFIX, lease_name
from localmodel_router.scale_to_zero import ScaleToZero
from localmodel_router.table import ModelEntry, ModelSettings, ModelTable
from tests.support.router_fixtures import RecordingScaler


class MemoryClock:
    """A shared clock in memory, with the Lease's rule: a publication never moves it backwards."""

    def __init__(self) -> None:
        self.uses: dict[str, float] = {}
        self.published: list[tuple[str, float]] = []
        self.fail_reads = False
        self.fail_writes = False

    async def publish(self, model: ModelEntry, used_at: float) -> None:
        if self.fail_writes:
            raise RuntimeError("leases is forbidden")
        self.published.append((model.name, used_at))
        self.uses[model.name] = max(self.uses.get(model.name, 0.0), used_at)

    async def last_use(self, model: ModelEntry) -> float | None:
        if self.fail_reads:
            raise RuntimeError("leases is forbidden")
        return self.uses.get(model.name)


def replica(clock: MemoryClock, delay: float = 10, **kwargs: float) -> tuple[ScaleToZero, ModelEntry]:
    table = ModelTable()
    manager = ScaleToZero(table, RecordingScaler(), clock=clock, **kwargs)
    entry = table.upsert_model("zero", ModelSettings(min_replicas=0, scale_down_delay=delay))
    table.set_endpoints("zero", [("127.0.0.1:1", True)])
    return manager, entry


def calls(manager: ScaleToZero) -> list[tuple[str, str]]:
    assert isinstance(manager.scaler, RecordingScaler)
    return manager.scaler.calls


async def settle() -> None:
    await asyncio.sleep(0.01)


async def test_a_model_another_replica_serves_is_not_scaled_down() -> None:
    clock = MemoryClock()
    serving, served_here = replica(clock)
    idle, idle_entry = replica(clock)

    served_here.last_used = time.monotonic()
    serving.touched(served_here)
    serving.publish_uses()
    await settle()
    assert clock.uses["zero"] == pytest.approx(time.time(), abs=2)

    # The other replica has seen no request for twice the delay, by its own clock.
    idle_entry.last_used = time.monotonic() - 20
    idle.check_idle()
    await settle()
    assert calls(idle) == []
    assert idle_entry.last_used > time.monotonic() - 5  # its idle time now counts from that use

    # Nobody has used it for twice the delay, anywhere: it goes to zero.
    clock.uses["zero"] = time.time() - 20
    idle_entry.last_used = time.monotonic() - 20
    idle.check_idle()
    await settle()
    assert calls(idle) == [("down", "zero")]


async def test_uses_are_published_once_per_interval_and_while_streams_run() -> None:
    clock = MemoryClock()
    manager, entry = replica(clock, delay=600, publish_interval=30)
    kept = manager.table.upsert_model("kept", ModelSettings(min_replicas=1))
    manager.touched(kept)  # not a scale-to-zero model: nothing to share
    now = time.monotonic()
    entry.in_flight = 1
    manager.touched(entry)
    manager.publish_uses(now)
    manager.publish_uses(now + 10)
    await settle()
    assert [name for name, _ in clock.published] == ["zero"]
    manager.publish_uses(now + 31)  # a stream still running keeps the model awake everywhere
    await settle()
    assert len(clock.published) == 2

    entry.in_flight = 0
    entry.last_used = now + 40  # the stream ended
    before = time.time()
    manager.publish_uses(now + 62)
    await settle()
    assert len(clock.published) == 3
    assert clock.published[-1][1] == pytest.approx(before - 22, abs=2)  # when it ended, not now
    manager.publish_uses(now + 100)  # nothing new
    await settle()
    assert len(clock.published) == 3


async def test_the_interval_is_at_most_a_quarter_of_the_delay() -> None:
    clock = MemoryClock()
    manager, entry = replica(clock, delay=8, publish_interval=30)
    entry.in_flight = 1
    manager.touched(entry)
    now = time.monotonic()
    for offset in (0.0, 1.0, 2.5):  # the interval is 8 / 4 = 2 s: the second is too soon
        manager.publish_uses(now + offset)
    await settle()
    assert len(clock.published) == 2


async def test_without_a_readable_clock_a_replica_decides_alone() -> None:
    clock = MemoryClock()
    clock.uses["zero"] = time.time()
    clock.fail_reads = True
    manager, entry = replica(clock)
    entry.last_used = time.monotonic() - 20
    manager.check_idle()
    await settle()
    assert calls(manager) == [("down", "zero")]


async def test_a_failed_publication_is_tried_again() -> None:
    clock = MemoryClock()
    clock.fail_writes = True
    manager, entry = replica(clock, delay=600, publish_interval=30)
    manager.touched(entry)
    now = time.monotonic()
    manager.publish_uses(now)
    await settle()
    assert clock.published == []
    clock.fail_writes = False
    manager.publish_uses(now + 31)
    await settle()
    assert [name for name, _ in clock.published] == ["zero"]


def test_lease_names_fit_the_api_limit() -> None:
    assert lease_name("gemma") == LEASE_PREFIX + "gemma"
    long = lease_name("m" * 253)
    assert len(long) == 253 and long.startswith(LEASE_PREFIX)
    assert lease_name("m" * 253) != lease_name("m" * 252 + "n")
