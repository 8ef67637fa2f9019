"""The load-aware picker without servers: block hashes both sides compute, the load document, the cost,
the fallback to in-flight counts, pruning with the table, and that a not-ready endpoint is never chosen."""

from __future__ import annotations

import hashlib
import random
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from localmodel_router.picker import LoadPicker, LoadState, prefix_hit
from localmodel_router.proxy import Forwarder
from localmodel_router.scale_to_zero import ScaleToZero
from localmodel_router.settings import RouterSettings
from localmodel_router.table import Endpoint, ModelSettings, ModelTable
from localmodel_router.upstream import Pool
from localmodel_runtime.prefix_blocks import (
    BLOCK_BYTES,
    MAX_BLOCKS,
    block_hashes,
    prompt_text,
    request_blocks,
)
from localmodel_runtime.server.admission import Admission, AdmissionSettings
from localmodel_runtime.server.load import PrefixSlots, load_document

SYSTEM = "You are a careful assistant. " * 40  # ~1,100 characters: four whole blocks


def chat(system: str, user: str) -> dict[str, object]:
    return {
        "model": "m",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
    }


def picker(addresses: list[str]) -> tuple[LoadPicker, list[Endpoint]]:
    table = ModelTable()
    table.upsert_model("m", ModelSettings(strategy="loadAware"))
    table.set_endpoints("m", [(a, True) for a in addresses])
    entry = table.models["m"]
    return LoadPicker(table, Pool(), rng=random.Random(3)), entry.ready_endpoints


def fresh(**kwargs: object) -> LoadState:
    return LoadState(at=time.monotonic(), **kwargs)  # type: ignore[arg-type]


def test_blocks_are_prefix_hashes_of_whole_blocks_of_the_canonical_text() -> None:
    first, second = request_blocks(chat(SYSTEM, "hello")), request_blocks(chat(SYSTEM, "bye"))
    assert len(first) == len(prompt_text(chat(SYSTEM, "hello"))) // BLOCK_BYTES >= 4
    # Same system prompt: the same leading blocks; the turn that differs changes only what follows.
    assert first[:4] == second[:4]
    # Each hash names the whole prefix: the same block after a different start hashes differently.
    text = "x" * BLOCK_BYTES
    assert block_hashes("a" * BLOCK_BYTES + text)[1] != block_hashes("b" * BLOCK_BYTES + text)[1]
    # Blocks are bytes of UTF-8 (multi-byte characters included), and the count is bounded.
    wide = "Zürich — 東京 " * 600  # 11,400 bytes: more than MAX_BLOCKS blocks
    data = wide.encode()
    expected = [
        hashlib.blake2b(data[: i * BLOCK_BYTES], digest_size=8).hexdigest() for i in range(1, MAX_BLOCKS + 1)
    ]
    assert block_hashes(wide) == expected
    # A role is part of the text: a system prompt sent as a user turn names other blocks.
    as_user = request_blocks({"messages": [{"role": "user", "content": SYSTEM}]})
    assert not set(as_user) & set(first)
    # Content parts and a plain completion prompt have canonical text too; short prompts no blocks.
    parts = {"messages": [{"role": "system", "content": [{"type": "text", "text": SYSTEM}]}]}
    assert request_blocks(parts)[:4] == first[:4]
    assert len(request_blocks({"prompt": [SYSTEM, "other"]})) == len(SYSTEM) // BLOCK_BYTES
    assert request_blocks({"prompt": "short"}) == [] and request_blocks({"input": 3}) == []
    # Bodies the router has not validated never make hashing raise.
    odd = {"messages": [7, {"role": 1, "content": [{"text": 5}, "x", {"text": SYSTEM}]}], "system": {"a": 1}}
    assert len(request_blocks(odd)) == 4


def test_prefix_slots_replace_like_the_batch_engine_and_the_document_lists_them() -> None:
    slots = PrefixSlots(2)
    a, b, c = (request_blocks(chat(s * 100, "q")) for s in ("alpha ", "bravo ", "charlie "))
    slots.record(a)
    slots.record(b)
    grown = request_blocks(chat("alpha " * 100, "q" * 600))  # the same chat, one turn longer
    slots.record(grown)  # takes a's slot (longest shared prefix), so b stays
    assert set(slots.held()) == set(grown) | set(b)
    slots.record(c)  # no shared prefix: replaces the least recently used (b)
    assert set(slots.held()) == set(grown) | set(c)
    admission = Admission(AdmissionSettings(limit=2, max_waiting=4))
    document = load_document(admission, slots, lambda: None)
    assert document["running"] == 0 and document["waiting"] == 0 and document["limit"] == 2
    assert document["kv_cache_usage"] == 0.0 and document["block_bytes"] == BLOCK_BYTES
    assert set(document["blocks"]) == set(slots.held())


def test_load_state_parses_the_document_and_refuses_others() -> None:
    state = LoadState.parse(
        b'{"running":2,"waiting":1,"limit":4,"kv_cache_usage":0.5,"block_bytes":256,"blocks":["ab"]}', 1.0
    )
    assert (state.running, state.waiting, state.limit, state.kv_cache_usage, state.blocks) == (
        2,
        1,
        4,
        0.5,
        {"ab"},
    )
    other_size = LoadState.parse(
        b'{"running":0,"waiting":0,"limit":4,"kv_cache_usage":0,"block_bytes":64,"blocks":["ab"]}', 1.0
    )
    assert other_size.blocks == set()
    for raw in (b"[]", b'{"object":"chat.completion"}', b'{"running":"x","waiting":0,"limit":1}'):
        try:
            LoadState.parse(raw, 1.0)
        except ValueError:
            continue
        raise AssertionError(f"{raw!r} was accepted")


def test_prefix_holder_wins_while_it_has_a_free_slot_and_a_deep_queue_loses() -> None:
    pick, (a, b) = picker(["10.0.0.1:8080", "10.0.0.2:8080"])
    body = chat(SYSTEM, "question")
    blocks = request_blocks(body)
    assert prefix_hit(blocks, set(blocks)) == 1.0 and prefix_hit(blocks, set(blocks[:2])) == 0.5
    pick.states[a.address] = fresh(running=2, limit=4, blocks=set(blocks[:-1]))
    pick.states[b.address] = fresh(limit=4)
    assert all(pick.choose([a, b], body) is a for _ in range(20))
    # The holder's queue is deep: the idle replica is cheaper than reading the prompt there later.
    pick.states[a.address] = fresh(running=4, waiting=6, limit=4, kv_cache_usage=0.9, blocks=set(blocks))
    assert all(pick.choose([a, b], body) is b for _ in range(20))


def test_in_flight_counts_correct_a_poll_that_is_behind() -> None:
    pick, (a, b) = picker(["10.0.0.1:8080", "10.0.0.2:8080"])
    pick.states[a.address] = fresh(limit=2)
    pick.states[b.address] = fresh(limit=2)
    a.in_flight = 3  # placed by this router since the last poll, which still says idle
    assert all(pick.choose([a, b], {"prompt": "p"}) is b for _ in range(20))


def test_stale_or_missing_state_falls_back_to_in_flight_counts() -> None:
    pick, (a, b, c) = picker(["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"])
    body = chat(SYSTEM, "question")
    # Nothing polled: least in-flight decides; the busiest of three never wins its comparison.
    a.in_flight, b.in_flight, c.in_flight = 9, 0, 1
    assert a not in {pick.choose([a, b, c], body) for _ in range(50)}
    # a's state says it holds the prompt and is idle, but it is old: a counts by in-flight only.
    pick.states[a.address] = LoadState(limit=4, blocks=set(request_blocks(body)), at=time.monotonic() - 60)
    pick.states[b.address] = fresh(running=1, limit=4)
    a.in_flight, b.in_flight, c.in_flight = 0, 0, 5
    chosen = {pick.choose([a, b, c], body).address for _ in range(50)}
    assert a.address in chosen and c.address not in chosen


def test_the_chosen_replica_is_credited_with_the_prompt_until_the_next_poll() -> None:
    pick, (a, b) = picker(["10.0.0.1:8080", "10.0.0.2:8080"])
    pick.states[a.address] = fresh(limit=4)
    pick.states[b.address] = fresh(limit=4)
    body = chat(SYSTEM, "first")
    first = pick.choose([a, b], body)
    # Requests sharing the system prompt follow it, before any poll has seen the first one.
    assert all(pick.choose([a, b], chat(SYSTEM, f"turn {i}")) is first for i in range(10))


def test_endpoints_leaving_the_table_are_forgotten() -> None:
    pick, (a, b) = picker(["10.0.0.1:8080", "10.0.0.2:8080"])
    pick.states[a.address] = fresh()
    pick.states[b.address] = fresh()
    pick.failures[b.address] = 3
    pick.table.set_endpoints("m", [(a.address, True)])
    assert set(pick.states) == {a.address} and pick.failures == {}
    pick.table.remove_model("m")
    assert pick.states == {}
    pick.table.upsert_model("n", ModelSettings(strategy="loadAware"))
    pick.table.set_endpoints("n", [("10.0.0.9:8080", True)])
    pick.states["10.0.0.9:8080"] = fresh()
    pick.forget_model("n")
    assert pick.states == {}


endpoint_states = st.lists(
    st.tuples(
        st.booleans(),  # ready
        st.integers(0, 8),  # in flight
        st.one_of(
            st.none(),
            st.builds(
                lambda r, w, limit, kv, hit, age: (r, w, limit, kv, hit, age),
                st.integers(0, 8),
                st.integers(0, 20),
                st.integers(1, 8),
                st.floats(0, 1),
                st.booleans(),
                st.sampled_from([0.0, 60.0]),
            ),
        ),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(endpoint_states, st.sampled_from([chat(SYSTEM, "q"), {"prompt": "short"}, {"prompt": SYSTEM * 3}]))
def test_the_picker_never_picks_a_not_ready_endpoint(
    described: list[tuple[bool, int, tuple[int, int, int, float, bool, float] | None]],
    body: dict[str, object],
) -> None:
    """Through the forwarder's choice, as requests take it: not-ready endpoints may carry the most
    attractive state (idle, holding the whole prompt) and are still never chosen."""
    table = ModelTable()
    table.upsert_model("m", ModelSettings(strategy="loadAware"))
    table.set_endpoints("m", [(f"10.0.0.{i}:8080", ready) for i, (ready, _, _) in enumerate(described)])
    entry = table.models["m"]
    forwarder = Forwarder(table, Pool(), RouterSettings(), ScaleToZero(table, None))
    blocks = set(request_blocks(body))
    now = time.monotonic()
    for endpoint, (ready, in_flight, state) in zip(entry.endpoints, described, strict=True):
        endpoint.in_flight = in_flight
        if not ready:
            forwarder.picker.states[endpoint.address] = LoadState(limit=8, blocks=set(blocks), at=now)
        elif state is not None:
            running, waiting, limit, kv, hit, age = state
            forwarder.picker.states[endpoint.address] = LoadState(
                running, waiting, limit, kv, set(blocks) if hit else set(), now - age
            )
    if not entry.ready_endpoints:
        return
    for _ in range(5):
        chosen = forwarder.choose(entry, entry.ready_endpoints, body)
        assert chosen.ready and chosen in entry.ready_endpoints
