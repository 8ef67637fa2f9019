"""Balancing: least in-flight (power of two choices) and prefix affinity with bounded load."""

from __future__ import annotations

import random
from collections import Counter

from localmodel_router.balance import HashRing, PrefixAffinity, least_in_flight, prefix_key
from localmodel_router.table import Endpoint


def endpoints(count: int) -> list[Endpoint]:
    return [Endpoint(f"10.0.0.{i}:8080") for i in range(count)]


def test_least_in_flight_prefers_the_less_loaded_of_two() -> None:
    a, b = endpoints(2)
    a.in_flight = 5
    assert all(least_in_flight([a, b]) is b for _ in range(50))


def test_least_in_flight_never_picks_the_most_loaded_of_three() -> None:
    eps = endpoints(3)
    eps[0].in_flight, eps[1].in_flight, eps[2].in_flight = 9, 1, 2
    rng = random.Random(1)
    picks = {least_in_flight(eps, rng).address for _ in range(200)}
    # Two distinct endpoints are sampled, so the busiest one always loses its comparison.
    assert eps[0].address not in picks
    assert picks == {eps[1].address, eps[2].address}


def test_least_in_flight_spreads_a_simulated_load() -> None:
    eps = endpoints(4)
    rng = random.Random(7)
    for _ in range(400):
        least_in_flight(eps, rng).in_flight += 1
    loads = [e.in_flight for e in eps]
    assert max(loads) - min(loads) <= 2


def test_prefix_affinity_is_sticky_while_load_is_even() -> None:
    eps = endpoints(4)
    affinity = PrefixAffinity()
    key = b"system\x00You are a helpful assistant"
    first = affinity.choose(eps, key)
    assert all(affinity.choose(eps, key) is first for _ in range(20))


def test_prefix_affinity_spreads_distinct_prefixes() -> None:
    eps = endpoints(4)
    affinity = PrefixAffinity()
    owners = Counter(affinity.choose(eps, f"user\x00conversation {i}".encode()).address for i in range(400))
    assert len(owners) == 4
    assert min(owners.values()) > 40  # virtual nodes keep the ring roughly even


def test_bounded_load_moves_a_hot_prefix_off_an_overloaded_endpoint() -> None:
    eps = endpoints(4)
    ring = HashRing(eps)
    key = b"hot prefix"
    home = ring.choose(key)
    home.in_flight = 10  # mean load with the new request: 11/4 → bound ceil(2.75 * 1.25) = 4
    moved = ring.choose(key)
    assert moved is not home
    assert moved.in_flight + 1 <= 4


def test_bound_counts_the_new_request_so_an_idle_ring_accepts_home() -> None:
    eps = endpoints(3)
    ring = HashRing(eps)
    assert ring.choose(b"k").in_flight == 0


def test_ring_is_rebuilt_when_endpoints_change() -> None:
    eps = endpoints(3)
    affinity = PrefixAffinity()
    key = b"some prefix"
    chosen = affinity.choose(eps, key)
    remaining = [e for e in eps if e is not chosen]
    assert affinity.choose(remaining, key) in remaining


def test_prefix_key_uses_roles_and_a_bounded_prefix_of_messages() -> None:
    long = "x" * 10_000
    key = prefix_key({"messages": [{"role": "system", "content": long}, {"role": "user", "content": "hi"}]})
    assert key is not None and len(key) == 256
    as_user = prefix_key({"messages": [{"role": "user", "content": "same"}]})
    as_system = prefix_key({"messages": [{"role": "system", "content": "same"}]})
    assert as_user != as_system


def test_prefix_key_reads_content_parts_prompts_and_inputs() -> None:
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]}
    assert prefix_key(parts) == prefix_key({"messages": [{"role": "user", "content": "hello"}]})
    assert prefix_key({"prompt": ["first", "second"]}) == b"first"
    assert prefix_key({"prompt": "abc"}) == b"abc"
    assert prefix_key({"input": "embed me"}) == b"embed me"
    assert prefix_key({"model": "m"}) is None
