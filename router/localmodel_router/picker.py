"""The `loadAware` strategy: score every ready endpoint from its polled load and cached prefixes.

What llm-d's endpoint picker (Gateway API Inference Extension scorers) combines, in one cost, lowest
wins (ties at random, so idle replicas share the traffic):

    cost = W_LOAD · load / slots + W_KV · kv_cache_usage − W_PREFIX · prefix_hit

- `load` is the replica's requests (running + waiting) as it last reported them, corrected by how
  this router's own in-flight count to it has moved since: the count moves the moment a request is
  placed or ends, so a burst between two polls does not pile onto one replica and a request that
  ended just after a poll does not keep the replica looking busy, while other routers' requests
  still show in the polled figure. Dividing by the slots makes a full replica cost W_LOAD whatever
  its size.
- `kv_cache_usage` (0..1) is the share of the KV cache that running requests hold, scaled down with
  the load when requests have ended since the poll.
- `prefix_hit` (0..1) is the share of the request's prompt blocks whose prefix the replica's slots hold
  (prefix hashes of the request text in fixed-size blocks, `localmodel_runtime.prefix_blocks`).

With W_PREFIX = W_LOAD a replica holding the whole prompt is preferred while it has a free slot and
left for an idle one once a request would have to wait there: a queued request waits for a whole
generation, which costs more than reading a prompt again (llm-d's finding that prefix-only routing
collapses under load, shared/reference/routing-and-runtime.md §0.2).

State comes from a poller in the background (`GET /v1/internal/load` on every endpoint of a model in
use, every `interval` seconds, each poll bounded by `timeout`); a request never waits for it. An
endpoint whose state is older than `stale_after` (poll failing, not polled yet) is scored by this
router's in-flight count alone, and when no candidate is fresh the choice is `least_in_flight`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from localmodel_router.balance import least_in_flight
from localmodel_router.table import Endpoint, ModelEntry, ModelTable
from localmodel_router.upstream import Pool, UpstreamError
from localmodel_runtime.prefix_blocks import BLOCK_BYTES, request_blocks

log = logging.getLogger("localmodel.router.picker")

STRATEGY = "loadAware"
W_LOAD = 1.0
W_KV = 0.5
W_PREFIX = 1.0
LOAD_PATH = "/v1/internal/load"
_RNG = random.Random()


@dataclass
class LoadState:
    """One endpoint's last reported load."""

    running: int = 0
    waiting: int = 0
    limit: int = 1
    kv_cache_usage: float = 0.0
    blocks: set[str] = field(default_factory=set)
    at: float = 0.0
    """When it was polled (monotonic seconds)."""
    in_flight_at: int = 0
    """This router's requests in flight to the endpoint when it was polled (the higher of the counts
    as the poll went out and as its answer came back: a request counted in either may be in the
    reported figures)."""

    @classmethod
    def parse(cls, raw: bytes, at: float) -> LoadState:
        """The state in a load document; ValueError when it is not one."""
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("the load document is not a JSON object")
        try:
            running, waiting, limit = int(data["running"]), int(data["waiting"]), int(data["limit"])
            usage = float(data["kv_cache_usage"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"the load document lacks {exc}") from None
        blocks = data.get("blocks")
        # Hashes of another block size name other prefixes (a runtime of another version): ignore them.
        if data.get("block_bytes") != BLOCK_BYTES or not isinstance(blocks, list):
            blocks = []
        return cls(
            max(0, running),
            max(0, waiting),
            max(1, limit),
            min(1.0, max(0.0, usage)),
            set(map(str, blocks)),
            at,
        )


def prefix_hit(blocks: Sequence[str], held: set[str]) -> float:
    """The share of `blocks` (a request's prefix hashes) whose prefix `held` contains."""
    if not blocks or not held:
        return 0.0
    count = 0
    for block in blocks:
        if block not in held:
            break
        count += 1
    return count / len(blocks)


def estimate(endpoint: Endpoint, state: LoadState) -> tuple[int, float]:
    """The endpoint's requests and KV-cache use now: the polled figures moved by this router's
    change in in-flight requests since the poll, never below its own in-flight count."""
    polled = state.running + state.waiting
    load = max(endpoint.in_flight, polled - state.in_flight_at + endpoint.in_flight)
    kv = state.kv_cache_usage
    if polled > load:
        kv *= load / polled
    return load, kv


class LoadPicker:
    """Per-endpoint load state, its poller, and the choice. One per router (state is per address)."""

    def __init__(
        self,
        table: ModelTable,
        pool: Pool,
        interval: float = 0.25,
        timeout: float = 1.0,
        stale_after: float = 2.0,
        active_window: float = 60.0,
        rng: random.Random = _RNG,
    ) -> None:
        self.table = table
        self.pool = pool
        self.interval = interval
        """Seconds between two polls of an endpoint; llm-d's picker scrapes every 50 ms, vLLM's
        production-stack router every 30 s; a quarter second keeps queue figures close to now at a
        few GETs per second per replica."""
        self.timeout = timeout
        self.stale_after = stale_after
        self.active_window = active_window
        """Only models used in the last this many seconds are polled: 2,000 idle models cost nothing."""
        self.rng = rng
        self.states: dict[str, LoadState] = {}
        self.failures: dict[str, int] = {}
        """Consecutive failed polls per address (tests and logs read it)."""
        table.endpoints_removed.append(self._endpoints_removed)

    # -- choice (hot path: no I/O) ----------------------------------------------------------------

    def choose(self, endpoints: Sequence[Endpoint], body: dict[str, Any]) -> Endpoint:
        if len(endpoints) == 1:
            return endpoints[0]
        oldest = time.monotonic() - self.stale_after
        fresh: list[LoadState | None] = []
        for endpoint in endpoints:
            state = self.states.get(endpoint.address)
            fresh.append(state if state is not None and state.at >= oldest else None)
        if not any(fresh):
            return least_in_flight(endpoints, self.rng)
        blocks = request_blocks(body)
        best: list[Endpoint] = []
        best_cost = 0.0
        for endpoint, state in zip(endpoints, fresh, strict=True):
            cost = self.cost(endpoint, state, blocks)
            if not best or cost < best_cost - 1e-9:
                best, best_cost = [endpoint], cost
            elif cost <= best_cost + 1e-9:
                best.append(endpoint)
        chosen = best[0] if len(best) == 1 else best[int(self.rng.random() * len(best))]
        chosen_state = fresh[endpoints.index(chosen)] if blocks else None
        if chosen_state is not None:
            # The replica will hold this prompt once it runs; the next poll says so too, but requests
            # sharing it may arrive before that.
            chosen_state.blocks.update(blocks)
        return chosen

    def cost(self, endpoint: Endpoint, state: LoadState | None, blocks: Sequence[str]) -> float:
        """The endpoint's cost for a request with these prompt blocks; `state` None: not fresh."""
        if state is None:
            known = self.states.get(endpoint.address)
            return W_LOAD * endpoint.in_flight / (known.limit if known else 1)
        load, kv = estimate(endpoint, state)
        return W_LOAD * load / state.limit + W_KV * kv - W_PREFIX * prefix_hit(blocks, state.blocks)

    # -- pruning (the table calls these when endpoints or models go) ------------------------------

    def _endpoints_removed(self, entry: ModelEntry, gone: list[Endpoint]) -> None:
        for endpoint in gone:
            self.forget(endpoint.address)

    def forget(self, address: str) -> None:
        self.states.pop(address, None)
        self.failures.pop(address, None)

    def forget_model(self, name: str) -> None:
        entry = self.table.get(name)
        if entry is not None:
            for endpoint in entry.endpoints:
                self.forget(endpoint.address)

    # -- polling ----------------------------------------------------------------------------------

    def _targets(self) -> dict[str, Endpoint]:
        """Ready endpoints of the load-aware models used lately, by address."""
        now = time.monotonic()
        targets: dict[str, Endpoint] = {}
        for entry in self.table.models.values():
            if entry.settings.strategy != STRATEGY or len(entry.ready_endpoints) < 2:
                continue
            if entry.in_flight == 0 and now - entry.last_used > self.active_window:
                continue
            for endpoint in entry.ready_endpoints:
                targets[endpoint.address] = endpoint
        return targets

    async def poll(self, endpoint: Endpoint) -> None:
        """Refresh one endpoint's state; a failure leaves the old state to go stale."""
        request = f"GET {LOAD_PATH} HTTP/1.1\r\nhost: {endpoint.address}\r\n\r\n".encode()
        sent = endpoint.in_flight
        try:
            async with asyncio.timeout(self.timeout):
                response = await self.pool.request(endpoint.host, endpoint.port, request, self.timeout)
                try:
                    raw = await response.read_all(self.timeout, 1 << 20)
                    status = response.status
                finally:
                    response.release()
            if status != 200:
                raise ValueError(f"status {status}")
            state = LoadState.parse(raw, time.monotonic())
            state.in_flight_at = max(sent, endpoint.in_flight)
            self.states[endpoint.address] = state
            self.failures.pop(endpoint.address, None)
        except (TimeoutError, UpstreamError, ValueError) as exc:
            failures = self.failures[endpoint.address] = self.failures.get(endpoint.address, 0) + 1
            if failures == 1:  # once per failing streak, not four times a second
                log.info(
                    "load of %s unavailable, balancing it by in-flight requests: %s", endpoint.address, exc
                )

    async def run(self) -> None:
        """Poll until cancelled; states of addresses no longer polled are dropped each round."""
        while True:
            try:
                targets = self._targets()
                for address in [a for a in self.states if a not in targets]:
                    self.forget(address)
                if targets:
                    await asyncio.gather(*(self.poll(e) for e in targets.values()))
            except Exception:  # a bug must not end the polling: requests would fall back for good
                log.exception("load polling failed")
            await asyncio.sleep(self.interval)
