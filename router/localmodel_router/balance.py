"""Endpoint choice: least in-flight (power of two choices) and prefix affinity (CHWBL).

Pure: the only state is each endpoint's in-flight counter, owned by the proxy, and a hash ring cached
per endpoint set. Prefix affinity sends requests that share a prompt prefix to the same replica so its
prompt cache hits, but never to one carrying more than `LOAD_FACTOR` × the mean load (consistent
hashing with bounded loads, Mirrokni et al.; KubeAI's PrefixHash uses the same 1.25).
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from collections.abc import Sequence
from typing import Any

from localmodel_router.table import Endpoint

LOAD_FACTOR = 1.25
VIRTUAL_NODES = 100
PREFIX_CHARS = 256
"""How much of the prompt the affinity key covers: enough to tell system prompts and first turns apart,
small enough that a 200 KB prompt costs no more to route than a short one."""
_RNG = random.Random()


def least_in_flight(endpoints: Sequence[Endpoint], rng: random.Random = _RNG) -> Endpoint:
    """Power of two choices: sample two endpoints, take the less loaded one.

    Near-optimal balance without scanning every endpoint, and it avoids the herd that a strict
    global minimum causes when several requests arrive between counter updates.
    """
    count = len(endpoints)
    if count == 1:
        return endpoints[0]
    if count == 2:
        a, b = endpoints
    else:
        i = int(rng.random() * count)
        j = int(rng.random() * (count - 1))
        if j >= i:
            j += 1
        a, b = endpoints[i], endpoints[j]
    if a.in_flight == b.in_flight:
        return a if rng.random() < 0.5 else b
    return a if a.in_flight < b.in_flight else b


def _hash(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class HashRing:
    def __init__(self, endpoints: Sequence[Endpoint], virtual_nodes: int = VIRTUAL_NODES) -> None:
        points = sorted(
            (_hash(f"{e.address}#{i}".encode()), index)
            for index, e in enumerate(endpoints)
            for i in range(virtual_nodes)
        )
        self.endpoints = list(endpoints)
        self.keys = [p for p, _ in points]
        self.owners = [o for _, o in points]

    def choose(self, key: bytes, load_factor: float = LOAD_FACTOR) -> Endpoint:
        """The first endpoint clockwise from `key` whose load stays within the bound."""
        endpoints = self.endpoints
        total = sum(e.in_flight for e in endpoints)
        # The bound counts the request being placed, so an idle cluster accepts it anywhere.
        bound = math.ceil((total + 1) / len(endpoints) * load_factor)
        start = bisect.bisect(self.keys, _hash(key)) % len(self.keys)
        owners = self.owners
        seen: set[int] = set()
        for step in range(len(owners)):
            index = owners[(start + step) % len(owners)]
            if index in seen:
                continue
            seen.add(index)
            if endpoints[index].in_flight + 1 <= bound:
                return endpoints[index]
            if len(seen) == len(endpoints):
                break
        return endpoints[owners[start]]


class PrefixAffinity:
    """Caches the ring for the current endpoint set; rebuilt only when that set changes."""

    def __init__(self) -> None:
        self._ring: HashRing | None = None
        self._members: tuple[int, ...] = ()

    def choose(self, endpoints: Sequence[Endpoint], key: bytes | None) -> Endpoint:
        if key is None or len(endpoints) == 1:
            return least_in_flight(endpoints)
        members = tuple(id(e) for e in endpoints)
        if self._ring is None or members != self._members:
            self._ring = HashRing(endpoints)
            self._members = members
        return self._ring.choose(key)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones (the runtime judges the rest)
        return "".join(
            text for p in content if isinstance(p, dict) and isinstance(text := p.get("text"), str)
        )
    return ""


def prefix_key(body: dict[str, Any], limit: int = PREFIX_CHARS) -> bytes | None:
    """The affinity key: the first `limit` characters of the prompt, or of the first messages.

    Messages are joined with their roles so that the same text in a different role (system prompt vs
    user turn) does not collide. None when the request has no prompt (the balancer falls back).
    """
    messages = body.get("messages")
    parts: list[str] = []
    size = 0
    if isinstance(messages, list):
        for message in messages:
            if not isinstance(message, dict):
                continue
            piece = f"{message.get('role', '')}\x00{_text(message.get('content'))}\x01"
            parts.append(piece)
            size += len(piece)
            if size >= limit:
                break
    else:
        prompt = body.get("prompt", body.get("input"))
        if isinstance(prompt, list) and prompt:
            prompt = prompt[0]
        if isinstance(prompt, str):
            parts.append(prompt[:limit])
    if not parts:
        return None
    return "".join(parts)[:limit].encode("utf-8", "surrogatepass")
