"""Waiting for a condition in tests: a bound on waiting, never a timing assertion."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def wait_until(check: Callable[[], bool], what: str, bound: float = 30.0) -> None:
    """Poll `check` on the event loop until it holds; fail naming `what` after `bound` seconds."""
    deadline = time.monotonic() + bound
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def poll_until(check: Callable[[], bool], what: str, bound: float = 30.0, interval: float = 0.01) -> None:
    """`wait_until` for a test without an event loop (its servers run in threads); a check that costs
    something (an HTTP request) passes a longer `interval`."""
    deadline = time.monotonic() + bound
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)
