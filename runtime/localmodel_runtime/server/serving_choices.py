"""A streamed response with several choices (`n` > 1): one generation per choice, run side by side,
their pieces sent as they come, each chunk naming its choice's `index` (as OpenAI interleaves them)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from ..backends.base import BackendError
from .admission import Admission
from .errors import APIError, from_backend
from .framing import Framing
from .generation import Generation, usage_of
from .streaming import EventStream, until_disconnected

log = logging.getLogger(__name__)

Event = tuple[int, "str | BackendError | APIError | None"]
"""(choice index, a piece of text | None when the choice finished | the error that ended it)."""


async def stream_choices(
    admission: Admission,
    request: Request,
    generations: list[Generation],
    framing: Framing,
    prompt_param: str,
    include_usage: bool,
) -> Response:
    queue: asyncio.Queue[Event] = asyncio.Queue()

    async def produce(index: int, generation: Generation) -> None:
        try:
            ticket = await admission.acquire()
            try:
                while (text := await generation.next()) is not None:
                    queue.put_nowait((index, text))
                queue.put_nowait((index, None))
            finally:
                ticket.release()
                await generation.aclose()
        except (BackendError, APIError) as exc:
            queue.put_nowait((index, exc))

    tasks = [asyncio.ensure_future(produce(i, g)) for i, g in enumerate(generations)]

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for generation in generations:
            generation.record()

    try:
        # The first event is awaited before the response starts: a prompt too long for the context is
        # still a 400, not an error event after a 200 (for a batch of prompts: if it fails first).
        first = await until_disconnected(request.receive, queue.get())
    except BaseException:
        await stop()
        raise
    if isinstance(first[1], BackendError):
        await stop()
        raise from_backend(first[1], prompt_param=prompt_param) from None
    if isinstance(first[1], APIError):
        await stop()
        raise first[1]
    return EventStream(_events(queue, first, generations, framing, include_usage, stop))


async def _events(
    queue: asyncio.Queue[Event],
    first: Event,
    generations: list[Generation],
    framing: Framing,
    include_usage: bool,
    stop: Callable[[], Awaitable[None]],
) -> AsyncGenerator[bytes, None]:
    try:
        for index, generation in enumerate(generations):
            head = framing.head(index)
            if head:
                yield head
            if generation.prefix:
                yield framing.piece(generation.prefix, index)
        running = len(generations)
        event: Event | None = first
        while running:
            index, item = event if event is not None else await queue.get()
            event = None
            if isinstance(item, str):
                yield framing.piece(item, index)
            elif item is None:
                running -= 1
                yield framing.tail(generations[index].finish_reason or "stop", index)
            else:
                # After a 200 the only way to report a failure is an error event; no [DONE], so clients raise.
                log.warning("choice %d failed mid-stream: %s", index, item)
                yield framing.error(from_backend(item) if isinstance(item, BackendError) else item)
                return
        if include_usage:
            yield framing.usage_chunk(usage_of(generations))
        yield framing.done()
    finally:
        await stop()
