"""Continuous batching over one llama.cpp context: several sequences per `llama_decode`.

One worker thread owns the context and steps every active sequence together: each step builds one
`llama_batch` holding the next token of every generating sequence plus a chunk of the prompts still
being read, decodes it once, and samples each sequence with its own sampler chain. New requests take a
free slot between steps and finished or cancelled ones leave, so a stream is never cut or paused for
another (llama-cpp-python's server serialises them, see shared/reference/routing-and-runtime.md §6).

Each slot is a llama.cpp sequence id with its own KV stream (`kv_unified = false`), so every request
gets the full per-sequence context. A slot keeps its KV after a request ends; the next request that
shares a prefix with it (a chat growing turn by turn) reuses that prefix instead of reading it again,
like llama-server's `cache_prompt`. With `prompt_cache_path` the most recently used slot's KV is
written to that file at shutdown and read back into slot 0 at start-up (llama.cpp's sequence state
file), so a restarted pod does not read a long shared system prompt again.

llama.cpp releases the GIL inside `llama_decode`, so the event loop keeps serving while the worker
computes. Events cross to asyncio with `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import contextlib
import ctypes
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..base import (
    BackendError,
    Finished,
    FinishReason,
    GenerationEvent,
    SamplingParams,
    TextPiece,
)
from .slot_file import restore_slot, save_slot
from .slots import DECODED_IMAGE, Request, Slot, common_prefix
from .spec import Drafter
from .vision import Vision, VisionPrompt

log = logging.getLogger(__name__)


class BatchEngine:
    """Runs up to `n_parallel` generations together on one llama.cpp context."""

    def __init__(
        self,
        lib: Any,
        *,
        model: Any,
        ctx: Any,
        vocab: Any,
        n_parallel: int,
        n_ctx_seq: int,
        n_batch: int,
        prompt_cache: bool,
        eog_tokens: list[int],
        cache_file: Path | None = None,
        drafter: Drafter | None = None,
        vision: Vision | None = None,
    ) -> None:
        self._lib = lib
        self._model = model
        self._ctx = ctx
        self._vocab = vocab
        self._mem = lib.llama_get_memory(ctx)
        self.n_parallel = n_parallel
        self.n_ctx_seq = n_ctx_seq
        self._n_batch = n_batch
        self._prompt_cache = prompt_cache
        self._eog = eog_tokens
        self._n_vocab = lib.llama_vocab_n_tokens(vocab)
        self._n_swa = int(lib.llama_model_n_swa(model)) if hasattr(lib, "llama_model_n_swa") else 0
        self._drafter = drafter
        self._vision = vision
        per_slot = 1 + (drafter.n_draft if drafter else 0)
        self._batch = lib.llama_batch_init(n_batch + n_parallel * per_slot, 0, 1)
        self._slots = [Slot(seq_id=i) for i in range(n_parallel)]
        self._waiting: collections.deque[Request] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._piece_buf = ctypes.create_string_buffer(256)
        self.steps = 0
        """Decode calls so far (tests and the bench read it)."""
        self.reused_tokens = 0
        """Prompt tokens taken from a slot's cached KV instead of being read again."""
        self._cache_file = cache_file
        if cache_file is not None and cache_file.is_file():
            restore_slot(lib, ctx, self._slots[0], n_ctx_seq, cache_file)
        self._thread = threading.Thread(target=self._run, name="llama-batch-engine", daemon=True)
        self._thread.start()

    # -- submitting (any thread) -----------------------------------------------------------------

    def submit(
        self, prompt: list[int], params: SamplingParams, sampler: Any, vision: VisionPrompt | None = None
    ) -> Request:
        """Queue a generation; `vision` (a prompt with images) replaces `prompt` when given."""
        loop = asyncio.get_running_loop()
        request = Request(prompt, params, sampler, loop, asyncio.Queue())
        if vision is not None:
            request.prompt, request.images = vision.tokens, vision.images
            request.extra_cells = vision.extra_cells
        with self._cond:
            if self._stopping:
                self._lib.llama_sampler_free(sampler)
                raise BackendError("the model is shutting down")
            self._waiting.append(request)
            self._cond.notify()
        return request

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold admission: requests submitted from this thread inside the block start together after it.

        The condition's lock is reentrant, so `submit` from the holding thread still works; the worker
        blocks until the block ends. Tests and benchmarks use it to line requests up.
        """
        with self._cond:
            yield

    def waiting(self) -> int:
        return len(self._waiting)

    def wake(self) -> None:
        """Let the worker notice a cancellation while it waits for work."""
        with self._cond:
            self._cond.notify()

    def active(self) -> int:
        return sum(1 for s in self._slots if s.request is not None)

    def kv_cache_usage(self) -> float:
        """Cells that running generations hold, over all sequences' cells (idle slots' cached prompts are
        reusable, not held). Read from any thread: a slot's token count is a snapshot."""
        held = sum(len(slot.cached) for slot in self._slots if slot.request is not None)
        return min(1.0, held / max(1, self.n_parallel * self.n_ctx_seq))

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()
        for request in self._waiting:
            self._lib.llama_sampler_free(request.sampler)
            self._emit(request, BackendError("the model is shutting down"))
        self._waiting.clear()
        if self._cache_file is not None:
            save_slot(self._lib, self._ctx, self._slots, self._cache_file)
        self._lib.llama_batch_free(self._batch)

    # -- the worker ------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._waiting and self.active() == 0:
                    self._cond.wait()
                if self._stopping:
                    break
                self._admit_locked()
            self._drop_cancelled()
            if self.active():
                try:
                    self._step()
                except Exception as exc:  # a bug or a llama.cpp failure: fail the requests, keep serving
                    log.exception("llama.cpp batch step failed")
                    for slot in self._slots:
                        if slot.request is not None:
                            self._finish(slot, error=BackendError(f"generation failed: {exc}"))
            else:
                # Nothing admitted yet (every waiting request was cancelled): wait briefly for more.
                time.sleep(0)
        for slot in self._slots:
            if slot.request is not None:
                self._finish(slot, error=BackendError("the model is shutting down"))

    def _admit_locked(self) -> None:
        while self._waiting:
            request = self._waiting[0]
            if request.cancelled.is_set():
                self._waiting.popleft()
                self._lib.llama_sampler_free(request.sampler)
                request.done.set()
                continue
            free = [s for s in self._slots if s.request is None]
            if not free:
                return
            self._waiting.popleft()
            # The free slot whose cached tokens share the longest prefix with the prompt; ties go to the
            # least recently used slot so hot prefixes are kept.
            slot = max(free, key=lambda s: (common_prefix(s.cached, request.prompt), -s.last_used))
            self._start(slot, request)

    def _start(self, slot: Slot, request: Request) -> None:
        lib, seq = self._lib, slot.seq_id
        keep = common_prefix(slot.cached, request.prompt) if self._prompt_cache else 0
        # The last prompt token is always decoded again: its logits give the first new token.
        keep = min(keep, len(request.prompt) - 1)
        if keep < len(slot.cached) and not lib.llama_memory_seq_rm(self._mem, seq, keep, -1):
            keep = 0
        if keep > 0 and self._n_swa > 0:
            # Sliding-window layers only keep recent positions; the kept prefix is usable only if the
            # window before the first new position is still there (llama-server's check).
            pos_min = lib.llama_memory_seq_pos_min(self._mem, seq)
            if pos_min > max(0, keep - self._n_swa):
                keep = 0
        if keep == 0:
            lib.llama_memory_seq_rm(self._mem, seq, -1, -1)
        slot.cached = request.prompt[:keep]
        slot.n_prompt_read = keep
        slot.pending = None
        slot.n_generated = 0
        slot.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        slot.request = request
        if keep:
            self.reused_tokens += keep
            log.debug("slot %d reuses %d cached prompt tokens", seq, keep)

    def _drop_cancelled(self) -> None:
        for slot in self._slots:
            if slot.request is not None and slot.request.cancelled.is_set():
                self._finish(slot, event=None)

    def _step(self) -> None:
        lib, batch = self._lib, self._batch
        n = 0
        outputs: list[tuple[Slot, int]] = []
        drafts = self._drafter.guesses(self._slots, self.n_ctx_seq) if self._drafter else {}
        drafted: dict[int, list[int]] = {}

        def add(token: int, pos: int, seq: int, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = pos
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = seq
            batch.logits[n] = logits
            n += 1

        # Generating sequences first: one token each keeps every stream moving at every step.
        for slot in self._slots:
            if slot.request is not None and slot.pending is not None:
                outputs.append((slot, n))
                add(slot.pending, len(slot.cached), slot.seq_id, True)
                slot.cached.append(slot.pending)
                slot.pending = None
                # The draft's guesses follow, each with logits: the main model checks them all at once.
                for guess in drafts.get(slot.seq_id, []):
                    add(guess, len(slot.cached) + len(drafted.setdefault(slot.seq_id, [])), slot.seq_id, True)
                    drafted[slot.seq_id].append(guess)
        # Then prompt chunks, oldest request first, within what is left of n_batch.
        budget = self._n_batch - n
        for slot in self._slots:
            request = slot.request
            if request is None or slot.n_prompt_read >= len(request.prompt) or budget <= 0:
                continue
            end = len(request.prompt)
            if request.images:
                budget -= self._read_images(slot)
                if slot.request is None or budget <= 0:
                    continue
                end = min((p for p in request.images if p > slot.n_prompt_read), default=end)
            chunk = request.prompt[slot.n_prompt_read : min(end, slot.n_prompt_read + budget)]
            for i, token in enumerate(chunk):
                last = slot.n_prompt_read + i == len(request.prompt) - 1
                if last:
                    outputs.append((slot, n))
                add(token, len(slot.cached), slot.seq_id, last)
                slot.cached.append(token)
            slot.n_prompt_read += len(chunk)
            budget -= len(chunk)
        if n == 0:
            return
        batch.n_tokens = n
        status = lib.llama_decode(self._ctx, batch)
        self.steps += 1
        if status != 0:
            raise RuntimeError(f"llama_decode returned {status}")
        for slot, index in outputs:
            guesses = drafted.get(slot.seq_id)
            if guesses:
                self._sample_guessed(slot, index, guesses)
            else:
                self._sample(slot, index)

    def _read_images(self, slot: Slot) -> int:
        """Decode the images at the slot's reading position into its sequence (the helper runs its own
        decodes, which this step's batch does not depend on); the cells filled. A failed image fails
        its request only."""
        request = slot.request
        assert request is not None and self._vision is not None
        filled = 0
        while (image := request.images.get(slot.n_prompt_read)) is not None:
            try:
                self._vision.decode_image(self._ctx, image, len(slot.cached), slot.seq_id, self._n_batch)
            except BackendError as exc:
                self._finish(slot, error=exc)
                return filled
            slot.cached.extend([DECODED_IMAGE] * image.n_pos)
            slot.n_prompt_read += image.n_pos
            filled += image.n_tokens
        return filled

    def _sample(self, slot: Slot, index: int) -> None:
        assert slot.request is not None
        token = int(self._lib.llama_sampler_sample(slot.request.sampler, self._ctx, index))
        if self._take(slot, token):
            slot.pending = token

    def _sample_guessed(self, slot: Slot, index: int, guesses: list[int]) -> None:
        """Sample the positions of the pending token and of the draft's guesses in turn; keep guesses
        while they are what the model samples, and drop the rest from the KV cache."""
        assert slot.request is not None and self._drafter is not None
        sampler = slot.request.sampler
        kept = 0
        for i in range(len(guesses) + 1):
            token = int(self._lib.llama_sampler_sample(sampler, self._ctx, index + i))
            if not self._take(slot, token):
                break
            if i < len(guesses) and token == guesses[i]:
                slot.cached.append(token)  # already decoded: the next position's logits follow it
                kept += 1
                continue
            slot.pending = token
            break
        self._drafter.stats.drafted += len(guesses)
        self._drafter.stats.accepted += kept
        self._lib.llama_memory_seq_rm(self._mem, slot.seq_id, len(slot.cached), -1)

    def _take(self, slot: Slot, token: int) -> bool:
        """Emit a sampled token; False when the generation has finished (the token ended it)."""
        request = slot.request
        assert request is not None and slot.decoder is not None
        params = request.params
        if self._lib.llama_vocab_is_eog(self._vocab, token) and not params.ignore_eos:
            self._finish(slot, event="stop")
            return False
        slot.n_generated += 1
        self._emit(request, TextPiece(slot.decoder.decode(self._piece(token)), 1))
        limit = params.max_tokens if params.max_tokens and params.max_tokens > 0 else None
        cells = len(slot.cached) + request.extra_cells
        if (limit is not None and slot.n_generated >= limit) or cells >= self.n_ctx_seq:
            # max_tokens is reached, or the token would not fit in the context to produce another one.
            self._finish(slot, event="length")
            return False
        return True

    def _piece(self, token: int) -> bytes:
        size = self._lib.llama_token_to_piece(self._vocab, token, self._piece_buf, 256, 0, False)
        if size < 0:
            buf = ctypes.create_string_buffer(-size)
            size = self._lib.llama_token_to_piece(self._vocab, token, buf, -size, 0, False)
            return bytes(buf.raw[:size])
        return bytes(self._piece_buf.raw[:size])

    def _finish(
        self,
        slot: Slot,
        *,
        event: FinishReason | None = None,
        error: BaseException | None = None,
    ) -> None:
        request = slot.request
        assert request is not None
        # `slot.cached` lists exactly the decoded tokens (a cancelled prompt read included), so the KV
        # stays reusable; after an error the stream may be inconsistent, so the slot starts over.
        if error is not None:
            self._lib.llama_memory_seq_rm(self._mem, slot.seq_id, -1, -1)
            slot.cached = []
            if self._drafter is not None:
                self._drafter.forget(slot.seq_id)
        if error is not None:
            self._emit(request, error)
        elif event is not None and slot.decoder is not None:
            tail = slot.decoder.decode(b"", final=True)
            if tail:
                self._emit(request, TextPiece(tail, 0))
            self._emit(request, Finished(event, len(request.prompt), slot.n_generated))
        self._lib.llama_sampler_free(request.sampler)
        slot.request = None
        slot.pending = None
        slot.decoder = None
        slot.last_used = time.monotonic()
        request.done.set()

    @staticmethod
    def _emit(request: Request, event: GenerationEvent | BaseException) -> None:
        try:
            request.loop.call_soon_threadsafe(request.queue.put_nowait, event)
        except RuntimeError:
            # The event loop is closed: nobody is listening any more.
            request.cancel()
