"""Waiting for a condition in tests: a bound on waiting, never a timing assertion."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


async def wait_until(check: Callable[[], bool], what: str, bound: float = 30.0) -> None:
    """Poll `check` on the event loop until it holds; fail naming `what` after `bound` seconds."""
    deadline = time.monotonic() + bound
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def poll_until(
    check: Callable[[], T | None],
    what: str,
    bound: float = 30.0,
    interval: float = 0.01,
    context: Callable[[], str] | None = None,
) -> T:
    """`wait_until` for a test without an event loop (its servers run in threads, or it drives a
    cluster): returns the first truthy value of `check`. A check that costs something (an HTTP request,
    kubectl) passes a longer `interval`. After `bound` seconds the test fails naming `what`, the last
    value seen and, where given, `context()` (a log tail, say)."""
    deadline = time.monotonic() + bound
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = f"\n{context()}" if context is not None else ""
            pytest.fail(f"timed out after {bound:.0f}s waiting for {what}; last value: {value!r}{detail}")
        time.sleep(interval)
