"""The load autoscaler's decisions: replicas follow the requests in flight, up at once, down only after
the delay, with the other router replicas' load added."""

from __future__ import annotations

import pytest

from localmodel_router.autoscale import LoadAutoscaler, desired_replicas
from localmodel_router.k8s_clock import LOAD_PREFIX, total_load
from localmodel_router.table import ModelEntry, ModelSettings, ModelTable
from tests.support.router_fixtures import RecordingScaler


def settings(**overrides: object) -> ModelSettings:
    base: dict[str, object] = {
        "min_replicas": 1,
        "max_replicas": 4,
        "target_in_flight": 2.0,
        "replicas": 1,
        "scale_down_delay": 60,
    }
    return ModelSettings(**{**base, **overrides})  # type: ignore[arg-type]


class SharedLoad:
    """The other router replicas' load, as the Lease would report it."""

    def __init__(self, others: float) -> None:
        self.others = others
        self.reported: list[float] = []

    async def publish(self, model: ModelEntry, used_at: float) -> None:
        pass

    async def last_use(self, model: ModelEntry) -> float | None:
        return None

    async def share_load(self, model: ModelEntry, load: float) -> float:
        self.reported.append(load)
        return load + self.others


def loaded(table: ModelTable, autoscaler: LoadAutoscaler, in_flight: int, start: float, seconds: int) -> None:
    for entry in table.models.values():
        entry.in_flight = in_flight
    for t in range(seconds):
        autoscaler.sample(start + t)


@pytest.mark.parametrize(
    ("load", "overrides", "wanted"),
    [
        (0.0, {}, 1),
        (2.0, {}, 1),
        (2.5, {}, 2),
        (7.9, {}, 4),
        (50.0, {}, 4),  # at most maxReplicas
        (0.0, {"min_replicas": 0}, 1),  # zero is the idle path's business
        (0.0, {"min_replicas": 3}, 3),
        (9.0, {"target_in_flight": None}, 3),  # the default target is 4
    ],
)
def test_desired_replicas(load: float, overrides: dict[str, object], wanted: int) -> None:
    assert desired_replicas(ModelEntry("m", settings(**overrides)), load) == wanted


async def test_scales_up_at_once_and_down_after_the_delay() -> None:
    table, scaler = ModelTable(), RecordingScaler()
    table.upsert_model("busy", settings())
    table.upsert_model("fixed", ModelSettings(replicas=1))  # no maxReplicas: never autoscaled
    autoscaler = LoadAutoscaler(table, scaler, window=30)
    loaded(table, autoscaler, 5, 0, 30)
    assert autoscaler.own_load("busy") == 5 and "fixed" not in autoscaler._samples
    await autoscaler.decide(30)
    assert scaler.calls == [("to 3", "busy")]

    table.upsert_model("busy", settings(replicas=3))  # the watch brings the new replicas
    loaded(table, autoscaler, 0, 30, 30)
    await autoscaler.decide(60)  # the load fell: the delay starts
    await autoscaler.decide(100)
    assert scaler.calls == [("to 3", "busy")]
    await autoscaler.decide(120)  # low for the whole delay
    assert scaler.calls == [("to 3", "busy"), ("to 1", "busy")]


async def test_a_burst_during_the_delay_restarts_it() -> None:
    table, scaler = ModelTable(), RecordingScaler()
    table.upsert_model("m", settings(replicas=2))
    autoscaler = LoadAutoscaler(table, scaler, window=10)
    loaded(table, autoscaler, 0, 0, 10)
    await autoscaler.decide(10)
    loaded(table, autoscaler, 4, 10, 10)  # back to what two replicas are for
    await autoscaler.decide(40)
    loaded(table, autoscaler, 0, 50, 10)
    await autoscaler.decide(75)  # low again: the delay starts over here
    await autoscaler.decide(130)  # 120 s after the first lull, but only 55 s into this one
    assert scaler.calls == []
    await autoscaler.decide(135)
    assert scaler.calls == [("to 1", "m")]


async def test_the_other_replicas_load_counts_and_zero_is_left_alone() -> None:
    table, scaler = ModelTable(), RecordingScaler()
    table.upsert_model("m", settings())
    clock = SharedLoad(others=6.0)
    autoscaler = LoadAutoscaler(table, scaler, clock)
    loaded(table, autoscaler, 1, 0, 5)
    await autoscaler.decide(5)
    assert clock.reported == [1.0] and scaler.calls == [("to 4", "m")]  # (1 + 6) / 2 → 4
    table.upsert_model("m", settings(replicas=0))
    await autoscaler.decide(20)
    assert scaler.calls == [("to 4", "m")]  # at zero the first request wakes it


def test_total_load_counts_fresh_reports_and_names_stale_ones() -> None:
    annotations = {
        LOAD_PREFIX + "a": "1.5@1000",
        LOAD_PREFIX + "b": "2.0@990",
        LOAD_PREFIX + "old": "9.0@900",
        LOAD_PREFIX + "junk": "lots",
        "other/annotation": "3@1000",
    }
    total, stale = total_load(annotations, now=1000, ttl=60)
    assert total == 3.5 and sorted(stale) == [LOAD_PREFIX + "junk", LOAD_PREFIX + "old"]
    assert total_load(None, now=0) == (0.0, [])
