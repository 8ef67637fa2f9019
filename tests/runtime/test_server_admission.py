"""The admission queue alone: first come first served, bounded, and a waiter that leaves takes nothing."""

from __future__ import annotations

import asyncio

import pytest

from localmodel_runtime.server.admission import Admission, AdmissionSettings
from localmodel_runtime.server.errors import APIError


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_runs_up_to_the_limit_then_queues_in_order() -> None:
    admission = Admission(AdmissionSettings(limit=2, max_waiting=5))
    held = [await admission.acquire(), await admission.acquire()]
    order: list[int] = []

    async def wait(i: int) -> None:
        ticket = await admission.acquire()
        order.append(i)
        ticket.release()

    waiters = [asyncio.create_task(wait(i)) for i in range(4)]
    await settle()
    assert admission.running == 2 and admission.waiting == 4 and order == []
    held[0].release()
    held[0].release()  # a second release is a no-op
    await asyncio.gather(*waiters)
    assert order == [0, 1, 2, 3]
    held[1].release()
    assert admission.running == 0 and admission.waiting == 0


async def test_full_queue_is_refused_with_retry_after() -> None:
    admission = Admission(AdmissionSettings(limit=1, max_waiting=1, retry_after=7))
    ticket = await admission.acquire()
    queued = asyncio.create_task(admission.acquire())
    await settle()
    with pytest.raises(APIError) as raised:
        await admission.acquire()
    assert raised.value.status == 429 and raised.value.headers == {"Retry-After": "7"}
    assert admission.rejected == 1
    ticket.release()
    (await queued).release()
    assert admission.running == 0


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    admission = Admission(AdmissionSettings(limit=1, max_waiting=3))
    ticket = await admission.acquire()
    gone = asyncio.create_task(admission.acquire())
    stays = asyncio.create_task(admission.acquire())
    await settle()
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    assert admission.waiting == 1
    ticket.release()
    (await stays).release()
    assert admission.running == 0 and admission.waiting == 0


async def test_cancelled_just_after_being_handed_a_slot_passes_it_on() -> None:
    admission = Admission(AdmissionSettings(limit=1, max_waiting=3))
    ticket = await admission.acquire()
    first = asyncio.create_task(admission.acquire())
    second = asyncio.create_task(admission.acquire())
    await settle()
    ticket.release()  # hands the slot to `first`, which is cancelled before it runs
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    (await second).release()
    assert admission.running == 0


async def test_queue_timeout_is_429() -> None:
    admission = Admission(AdmissionSettings(limit=1, max_waiting=3, queue_timeout=0.01))
    ticket = await admission.acquire()
    with pytest.raises(APIError) as raised:
        await admission.acquire()
    assert raised.value.status == 429 and admission.waiting == 0
    ticket.release()
    assert admission.running == 0
