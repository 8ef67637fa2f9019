"""What a load-aware router needs from this replica, in one small JSON document (`GET /v1/internal/load`).

Why an endpoint the router polls rather than a header on every reply: a header reaches the router only
when a reply does, so an idle replica's state would never refresh, and it would put work on every
response of the hot path; a poll costs one tiny GET per interval whatever the traffic, and none while
the model is idle (the router polls only models in use). Nothing here goes into the OpenAI bodies.

The prompt prefixes are those of the most recent prompts, one per generation slot, replaced the way
the llama batch engine replaces a slot's cached prompt: a new prompt goes to the slot sharing its
longest prefix, else to the least recently used one (`BatchEngine._admit_locked` in backends/llama). The
server keeps this model itself, from the JSON of chat, completion, messages and responses requests as
they arrive, so it works for every backend and needs no tokens: the router can only hash the request
text (`localmodel_runtime.prefix_blocks`). It is an estimate: the engine gives a prompt only a free
slot, and a prompt is recorded on arrival, before it has a slot.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..prefix_blocks import BLOCK_BYTES
from .admission import Admission


@dataclass
class _Slot:
    blocks: list[str] = field(default_factory=list)
    used: int = 0


def _shared(a: list[str], b: list[str]) -> int:
    """Leading blocks two prompts share; each hash names a whole prefix, so the first difference ends it."""
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count


class PrefixSlots:
    """The block hashes of the prompts the generation slots hold (at most `slots` prompts)."""

    def __init__(self, slots: int) -> None:
        self._slots = [_Slot() for _ in range(max(1, slots))]
        self._clock = itertools.count(1)

    def record(self, blocks: list[str]) -> None:
        """A prompt starts: it takes the slot that shares most of it (ties: least recently used)."""
        if not blocks:
            return
        slot = max(self._slots, key=lambda s: (_shared(s.blocks, blocks), -s.used))
        slot.blocks = blocks
        slot.used = next(self._clock)

    def held(self) -> list[str]:
        """Every block hash some slot holds, each once."""
        return list(dict.fromkeys(h for slot in self._slots for h in slot.blocks))


def load_document(
    admission: Admission, prefixes: PrefixSlots, kv_cache_usage: Callable[[], float | None]
) -> dict[str, Any]:
    """The load document: requests running and waiting, the slots, the KV cache in use and the held
    prefixes. `kv_cache_usage` falls back to busy slots, as `vllm:kv_cache_usage_perc` does."""
    limit = admission.settings.limit
    usage = kv_cache_usage()
    if usage is None:
        usage = min(1.0, admission.running / max(1, limit))
    return {
        "running": admission.running,
        "waiting": admission.waiting,
        "limit": limit,
        "kv_cache_usage": usage,
        "block_bytes": BLOCK_BYTES,
        "blocks": prefixes.held(),
    }
