"""Admission: at most `limit` generations run at once, the rest wait in a bounded first-come queue.

`limit` is what the backend runs together (`Capabilities.max_concurrency`: llama.cpp's sequences in
one context, 1 for a backend that cannot batch). A request that finds the queue full is refused at
once with 429 and `Retry-After` rather than waiting without bound: a router or client can then try
another replica. A freed slot is handed straight to the oldest waiter, so nobody overtakes anybody,
and a waiter that gives up (client gone, time bound passed) leaves the queue without taking a slot.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from dataclasses import dataclass

from .errors import APIError


@dataclass(frozen=True)
class AdmissionSettings:
    limit: int
    """Generations that run together."""
    max_waiting: int
    """Requests that may wait for a slot; one more is refused with 429."""
    queue_timeout: float | None = None
    """Seconds a request may wait for a slot before it is refused with 429 (None: no bound)."""
    retry_after: int = 1
    """Seconds sent in `Retry-After` with a 429."""


class Ticket:
    """A held slot; `release()` may be called more than once (only the first counts)."""

    __slots__ = ("_admission", "_held")

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._admission._release()


class Admission:
    def __init__(self, settings: AdmissionSettings) -> None:
        self.settings = settings
        self.running = 0
        self.rejected = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _busy(self) -> APIError:
        self.rejected += 1
        seconds = str(self.settings.retry_after)
        return APIError(
            429,
            "The model is busy: every slot is taken and the queue is full. Retry later.",
            code="queue_full",
            headers={"Retry-After": seconds},
        )

    async def acquire(self) -> Ticket:
        if self.running < self.settings.limit and not self._waiters:
            self.running += 1
            return Ticket(self)
        if len(self._waiters) >= self.settings.max_waiting:
            raise self._busy()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        # shield: the waiter must outlive a cancellation to tell "gave up" from "was just handed a slot".
        wait = asyncio.shield(waiter)
        timeout = self.settings.queue_timeout
        try:
            await (asyncio.wait_for(wait, timeout) if timeout else wait)
        except (asyncio.CancelledError, TimeoutError) as exc:
            if waiter.done() and not waiter.cancelled():
                self._release()  # the slot was handed over just as we gave up: pass it on
            else:
                waiter.cancel()
                self._remove(waiter)
            if isinstance(exc, TimeoutError):
                raise self._busy() from None
            raise
        return Ticket(self)

    def _remove(self, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot changes hands; `running` stays the same
                return
        self.running -= 1
