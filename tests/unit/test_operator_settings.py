"""kopf settings the operator depends on at scale (bench/scale_bench.py measures the effect)."""

from __future__ import annotations

import kopf

from localmodel_operator.kopf_storage import MemoryDiffBase
from localmodel_operator.main import WORKER_LIMIT, configure


def test_per_object_workers_are_bounded_and_give_their_slot_back_quickly() -> None:
    settings = kopf.OperatorSettings()
    assert settings.queueing.worker_limit is None  # kopf's default: one worker per object, unbounded
    configure(settings, watch_timeout=30, diffbase=MemoryDiffBase())
    assert settings.queueing.worker_limit == WORKER_LIMIT
    # A slot held for the whole idle timeout after an object's last event caps the rate at
    # limit / timeout objects per second; it must stay well above what one core reconciles (~20/s).
    assert WORKER_LIMIT / settings.queueing.idle_timeout >= 50
