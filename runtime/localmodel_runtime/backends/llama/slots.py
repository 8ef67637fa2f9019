"""What the batch engine keeps per request and per llama.cpp sequence (slot)."""

from __future__ import annotations

import asyncio
import codecs
import threading
from dataclasses import dataclass, field
from typing import Any

from ..base import GenerationEvent, SamplingParams


@dataclass
class Request:
    """One generation submitted to the engine; the asyncio side reads `queue`."""

    prompt: list[int]
    params: SamplingParams
    sampler: Any
    """The llama_sampler chain (owned by the request; freed by the worker when it leaves)."""
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[GenerationEvent | BaseException]
    images: dict[int, Any] = field(default_factory=dict)
    """The prompt's images (vision.EncodedImage) by their first position; `prompt` holds vision.IMAGE at
    the positions they take."""
    extra_cells: int = 0
    """KV cells the images fill beyond their positions (M-RoPE models), counted against the context."""
    cancelled: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self.cancelled.set()


@dataclass
class Slot:
    seq_id: int
    cached: list[int] = field(default_factory=list)
    """Tokens whose keys and values are in this sequence's KV stream, in position order; a position an
    image took holds DECODED_IMAGE, which matches no prompt, so a prefix is reused only up to an image."""
    request: Request | None = None
    n_prompt_read: int = 0
    pending: int | None = None
    """A sampled token that has been sent but not yet decoded into the KV cache."""
    n_generated: int = 0
    decoder: codecs.IncrementalDecoder | None = None
    last_used: float = 0.0


DECODED_IMAGE = -2
"""In `Slot.cached`: a position whose KV came from an image's embeddings (prompts hold vision.IMAGE there)."""


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    if len(a) <= len(b) and a == b[: len(a)]:
        return len(a)  # the usual case, compared in C: one extends the other
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
