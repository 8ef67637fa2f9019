"""One generation's output: the backend's text pieces with stop sequences applied exactly, its token
counts and timings, and LocalAI's whole-reply post-processing."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Any

from ..backends.base import Backend, BackendError, Finished, SamplingParams, TextPiece
from ..config import ModelConfig
from ..stops import StopMatcher
from .metrics import ServerMetrics


class Generation:
    """One generation's text: the backend's pieces with stop sequences applied exactly (`StopMatcher`:
    a match ends the generation there, and the text before it is the last output)."""

    def __init__(
        self,
        backend: Backend,
        metrics: ServerMetrics,
        prompt: str,
        params: SamplingParams,
        arrival: float,
        prefix: str = "",
        counts_prompt: bool = True,
    ) -> None:
        self.prefix = prefix
        """Text its choice starts with (an echoed prompt, the template's reply prefix)."""
        self.counts_prompt = counts_prompt
        """False for the second and later choices of one prompt: usage counts a prompt once."""
        self._backend = backend
        self._metrics = metrics
        self._prompt = prompt
        self._events: AsyncIterator[Any] = backend.generate(prompt, params)
        self._stops = StopMatcher(params.stop)
        self._finished = False
        self._prompt_tokens: int | None = None
        self.arrival = arrival
        self.completion_tokens = 0
        self.finish_reason: str | None = None
        self.first_token_at: float | None = None

    async def next(self) -> str | None:
        """The next piece of output (never empty), or None once the generation has finished."""
        while not self._finished:
            try:
                event = await anext(self._events)
            except StopAsyncIteration:
                event = Finished("stop", 0, self.completion_tokens)
            if type(event) is TextPiece:
                if self.first_token_at is None:
                    self.first_token_at = time.perf_counter()
                self.completion_tokens += event.tokens
                text = self._stops.feed(event.text)
                if self._stops.stopped:
                    self._finished = True
                    self.finish_reason = "stop"
                    await self.aclose()  # a stop sequence: free the backend's sequence at once
                if text:
                    return text
            else:
                assert isinstance(event, Finished)
                self._finished = True
                self.finish_reason = event.finish_reason
                self.completion_tokens = event.completion_tokens or self.completion_tokens
                self._prompt_tokens = event.prompt_tokens or None
                held = self._stops.flush()
                if held:
                    return held
        return None

    @property
    def prompt_tokens(self) -> int:
        if self._prompt_tokens is None:
            # Stopped by a stop sequence before the backend's Finished arrived: count it ourselves.
            try:
                self._prompt_tokens = len(self._backend.tokenize(self._prompt))
            except BackendError:
                self._prompt_tokens = 0
        return self._prompt_tokens

    async def aclose(self) -> None:
        """End the generation (the backend frees its sequence); safe to call more than once."""
        self._finished = True
        close = getattr(self._events, "aclose", None)
        if close is not None:
            await close()

    def record(self) -> None:
        if self.first_token_at is None and self.finish_reason is None:
            return  # refused or gone before it generated anything: not a request the model ran
        self._metrics.request_done(
            self.arrival,
            self.first_token_at,
            time.perf_counter(),
            self.prompt_tokens,
            self.completion_tokens,
            self.finish_reason or "abort",
        )


def usage_of(generations: list[Generation]) -> dict[str, int]:
    """The usage of a response's choices: each prompt counted once, however many choices it has (as
    OpenAI does), and every choice's tokens."""
    prompt = sum(g.prompt_tokens for g in generations if g.counts_prompt)
    completion = sum(g.completion_tokens for g in generations)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


# -- output post-processing (LocalAI's Finetune) -------------------------------------------------


def postprocess(config: ModelConfig, text: str) -> str:
    """`cutstrings`, `extract_regex`, `trimspace`, `trimsuffix`, in LocalAI's order (whole replies only)."""
    for pattern in config.cutstrings or []:
        text = re.sub(pattern, "", text)
    if config.extract_regex:
        found = "".join(m.group(0) for p in config.extract_regex if (m := re.search(p, text)))
        text = found or text
    for prefix in config.trimspace or []:
        text = text.removeprefix(prefix).strip()
    for suffix in config.trimsuffix or []:
        text = text.removesuffix(suffix).strip()
    return text
