"""Streaming generation with a Hugging Face `generate()` (transformers, OpenVINO, AutoGPTQ models).

`generate()` blocks, so it runs in a worker thread; a streamer object hands each new token to the
event loop, where an async iterator yields it as a `TextPiece`. Closing the iterator (client gone,
stop word found) sets a flag that a stopping criterion checks after every token, so the thread ends
within one decode step. One sequence runs at a time (a lock), the server queues the rest fairly.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from ...stops import StopMatcher
from ..base import BackendError, Finished, FinishReason, GenerationEvent, SamplingParams, TextPiece
from .decoder import IncrementalDecoder
from .requests import check_prompt, generate_kwargs, new_tokens, random_seed

_END = object()


class ThreadStream:
    """A bridge from a producer thread to an async consumer (TextIteratorStreamer, but async)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self.cancelled = threading.Event()

    def send(self, item: object) -> None:
        """Called from the worker thread."""
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    async def receive(self) -> object:
        return await self._queue.get()

    async def events(self) -> AsyncGenerator[GenerationEvent, None]:
        """What the producer sends, up to its Finished (an exception it sends is raised here); leaving
        early, or finishing, sets `cancelled` so that the producer stops."""
        try:
            while True:
                item = await self.receive()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, TextPiece | Finished)
                yield item
                if isinstance(item, Finished):
                    return
        finally:
            self.cancelled.set()


def run_in_thread(work: Callable[[ThreadStream], Finished]) -> AsyncIterator[GenerationEvent]:
    """Run `work(stream)` in a daemon thread; yield what it sends, then the Finished it returns."""

    async def events() -> AsyncIterator[GenerationEvent]:
        stream = ThreadStream(asyncio.get_running_loop())

        def target() -> None:
            try:
                stream.send(work(stream))
            except BaseException as exc:  # handed to the consumer, which raises it
                stream.send(exc)
            finally:
                stream.send(_END)

        thread = threading.Thread(target=target, name="generate", daemon=True)
        thread.start()
        async with contextlib.aclosing(stream.events()) as events:  # closing us closes it at once
            async for event in events:
                yield event

    return events()


class HFGenerator:
    """Generation for a loaded Hugging Face model + tokenizer, one sequence at a time."""

    def __init__(
        self,
        *,
        torch: Any,
        transformers: Any,
        model: Any,
        tokenizer: Any,
        device: str | None,
        context: int,
        stop_words: Callable[[SamplingParams], list[str]],
    ) -> None:
        self.torch = torch
        self.transformers = transformers
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.context = context
        self._stop_words = stop_words
        self._lock = threading.Lock()

    def tokenize(self, text: str) -> list[int]:
        bos = getattr(self.tokenizer, "bos_token", None)
        # A template that already starts with the BOS text must not get a second one.
        special = not (bos and text.startswith(bos))
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def generate(self, prompt: str, params: SamplingParams) -> AsyncIterator[GenerationEvent]:
        ids = self.tokenize(prompt)
        check_prompt(len(ids), self.context)
        limit = new_tokens(params, len(ids), self.context)
        kwargs = generate_kwargs(params, limit)
        words = self._stop_words(params)
        return run_in_thread(lambda stream: self._run(stream, ids, params, kwargs, words))

    def _run(
        self,
        stream: ThreadStream,
        ids: list[int],
        params: SamplingParams,
        kwargs: dict[str, Any],
        words: list[str],
    ) -> Finished:
        torch, tf = self.torch, self.transformers
        decoder = IncrementalDecoder(lambda t: self.tokenizer.decode(t, skip_special_tokens=True))
        stops = StopMatcher(words)
        cancelled = stream.cancelled

        class Streamer:
            """transformers' streamer protocol: put() gets the prompt once, then each new token."""

            prompt_seen = False

            def put(self, value: Any) -> None:
                if not self.prompt_seen:
                    self.prompt_seen = True
                    return
                tokens = [int(t) for t in value.reshape(-1).tolist()]
                text = stops.feed(decoder.push(tokens))
                if stops.stopped:
                    cancelled.set()
                stream.send(TextPiece(text, tokens=len(tokens)))

            def end(self) -> None:
                pass

        class Cancel(tf.StoppingCriteria):  # type: ignore[misc, name-defined]
            def __call__(self, input_ids: Any, scores: Any, **_: Any) -> Any:
                return torch.full(
                    (input_ids.shape[0],), cancelled.is_set(), dtype=torch.bool, device=input_ids.device
                )

        processors = tf.LogitsProcessorList()
        if params.presence_penalty or params.frequency_penalty:
            processors.append(
                _openai_penalties(tf, torch, len(ids), params.presence_penalty, params.frequency_penalty)
            )
        with self._lock:
            if cancelled.is_set():
                return Finished("stop", len(ids), 0)
            if not random_seed(params.seed):
                torch.manual_seed(params.seed)
            input_ids = torch.tensor([ids], dtype=torch.long)
            if self.device:
                input_ids = input_ids.to(self.device)
            try:
                with torch.inference_mode():
                    self.model.generate(
                        input_ids=input_ids,
                        attention_mask=torch.ones_like(input_ids),
                        streamer=Streamer(),
                        stopping_criteria=tf.StoppingCriteriaList([Cancel()]),
                        logits_processor=processors,
                        pad_token_id=self._pad_token(),
                        **kwargs,
                    )
            except (RuntimeError, ValueError) as exc:
                raise BackendError(f"generation failed: {exc}") from exc
        held = stops.flush()  # text that could have begun a stop word, when none came
        if held:
            stream.send(TextPiece(held, tokens=0))
        produced = decoder.tokens
        reason: FinishReason = (
            "length" if produced >= kwargs["max_new_tokens"] and not stops.stopped else "stop"
        )
        return Finished(reason, len(ids), produced)

    def _pad_token(self) -> int | None:
        pad = getattr(self.tokenizer, "pad_token_id", None)
        if pad is None:
            pad = getattr(self.tokenizer, "eos_token_id", None)
        return int(pad) if isinstance(pad, int) else None


def _openai_penalties(tf: Any, torch: Any, prompt_len: int, presence: float, frequency: float) -> Any:
    """OpenAI's presence / frequency penalties over the generated tokens, as a logits processor."""

    class Penalties(tf.LogitsProcessor):  # type: ignore[misc]
        def __call__(self, input_ids: Any, scores: Any) -> Any:
            generated = input_ids[:, prompt_len:]
            if generated.shape[1] == 0:
                return scores
            counts = torch.zeros_like(scores).scatter_add_(
                1, generated, torch.ones_like(generated, dtype=scores.dtype)
            )
            return scores - frequency * counts - presence * (counts > 0).to(scores.dtype)

    return Penalties()
