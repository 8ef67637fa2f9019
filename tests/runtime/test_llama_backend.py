"""The llama backend on a tiny random GGUF (fast) and on Gemma 3 270M (slow): no timing assertions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import llama_cpp  # noqa: F401  (the llama-cpp extra is part of the test venv: missing is a failure)
import pytest

from localmodel_runtime.backends.base import (
    Finished,
    InvalidRequest,
    ModelLoadError,
    SamplingParams,
    TextPiece,
    UnsupportedOperation,
)
from localmodel_runtime.backends.llama import LlamaBackend
from localmodel_runtime.backends.llama.batch import BatchEngine
from localmodel_runtime.backends.llama.ggml import LlamaGgmlBackend
from localmodel_runtime.config import ModelConfig
from tests.support.polling import wait_until
from tests.support.tiny_gguf import BOS_ID, EOS_ID, SEPARATOR_ID, byte_token_id

CONTEXT = 512


def config(model: str = "tiny.gguf", **keys: Any) -> ModelConfig:
    return ModelConfig.model_validate(
        {"name": "tiny", "backend": "llama", "parameters": {"model": model}, **keys}
    )


async def collect(
    backend: LlamaBackend, prompt: str, params: SamplingParams
) -> tuple[str, list[TextPiece], Finished]:
    pieces: list[TextPiece] = []
    finished: Finished | None = None
    async for event in backend.generate(prompt, params):
        if isinstance(event, TextPiece):
            pieces.append(event)
        else:
            assert finished is None
            finished = event
    assert finished is not None
    return "".join(p.text for p in pieces), pieces, finished


@pytest.fixture(scope="module")
async def tiny(tiny_gguf: Path) -> AsyncIterator[LlamaBackend]:
    backend = LlamaBackend(config(context_size=CONTEXT, options=["parallel:4"]), tiny_gguf.parent)
    await backend.load()
    yield backend
    await backend.close()


def engine(backend: LlamaBackend) -> BatchEngine:
    assert backend.engine is not None
    return backend.engine


GREEDY = SamplingParams(temperature=0, max_tokens=24)


async def test_capabilities_and_model_info(tiny: LlamaBackend) -> None:
    caps = tiny.capabilities()
    assert caps.completion and caps.tokenize and not caps.embeddings
    assert caps.max_concurrency == 4
    assert caps.context_size == CONTEXT
    info = tiny.model_info()
    assert info.chat_template is not None and "add_generation_prompt" in info.chat_template
    assert (info.bos_token, info.eos_token) == ("<s>", "</s>")


def test_tokenize(tiny: LlamaBackend) -> None:
    assert tiny.tokenize("ab") == [BOS_ID, SEPARATOR_ID, byte_token_id(ord("a")), byte_token_id(ord("b"))]


async def test_generate_streams_pieces_then_finished(tiny: LlamaBackend) -> None:
    text, pieces, finished = await collect(tiny, "hello", SamplingParams(temperature=0, max_tokens=16))
    assert finished == Finished("length", len(tiny.tokenize("hello")), 16)
    assert sum(p.tokens for p in pieces) == 16
    assert len(pieces) >= 16
    assert text


async def test_eos_finishes_with_stop(tiny: LlamaBackend) -> None:
    params = SamplingParams(temperature=0, max_tokens=8, logit_bias={EOS_ID: 100.0})
    text, _, finished = await collect(tiny, "hello", params)
    assert (text, finished.finish_reason, finished.completion_tokens) == ("", "stop", 0)
    params.ignore_eos = True
    _, _, finished = await collect(tiny, "hello", params)
    assert (finished.finish_reason, finished.completion_tokens) == ("length", 8)


async def test_until_context_full(tiny: LlamaBackend) -> None:
    prompt = "x" * 400
    n_prompt = len(tiny.tokenize(prompt))
    _, _, finished = await collect(
        tiny, prompt, SamplingParams(temperature=0, max_tokens=None, ignore_eos=True)
    )
    assert finished.finish_reason == "length"
    # Every token but the last one occupies a position; the last one is sampled from position CONTEXT-1.
    assert finished.prompt_tokens + finished.completion_tokens == CONTEXT + 1
    assert finished.prompt_tokens == n_prompt


async def test_temperature_zero_is_deterministic(tiny: LlamaBackend) -> None:
    first = await collect(tiny, "the same prompt", GREEDY)
    second = await collect(tiny, "the same prompt", GREEDY)
    assert first[0] == second[0]


async def test_seed_is_deterministic(tiny: LlamaBackend) -> None:
    def params(seed: int | None) -> SamplingParams:
        return SamplingParams(temperature=3.0, top_k=0, top_p=1.0, seed=seed, max_tokens=24)

    a = await collect(tiny, "seeded", params(7))
    b = await collect(tiny, "seeded", params(7))
    assert a[0] == b[0]
    others = {(await collect(tiny, "seeded", params(seed)))[0] for seed in (1, 2, 3, 4)}
    assert len(others | {a[0]}) > 1, "different seeds should give different samples at temperature 3"


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(temperature=0.7, top_k=5, top_p=0.5, min_p=0.05, typical_p=0.9, seed=1),
        SamplingParams(temperature=0.8, repeat_penalty=1.3, repeat_last_n=-1, seed=2),
        SamplingParams(temperature=0.8, presence_penalty=0.5, frequency_penalty=0.5, seed=3),
        SamplingParams(temperature=0.8, mirostat=1, seed=4),
        SamplingParams(temperature=0.8, mirostat=2, mirostat_tau=3.0, mirostat_eta=0.2, seed=5),
        SamplingParams(temperature=0, logit_bias={byte_token_id(ord("z")): 1000.0}),
    ],
    ids=["filters", "repeat", "presence-frequency", "mirostat1", "mirostat2", "logit-bias"],
)
async def test_sampling_settings(tiny: LlamaBackend, params: SamplingParams) -> None:
    params.max_tokens = 12
    params.ignore_eos = True
    text, _, finished = await collect(tiny, "sampling", params)
    assert finished.completion_tokens == 12
    if params.logit_bias:
        assert text == "z" * 12


async def test_prompt_longer_than_context_is_rejected_before_generation(tiny: LlamaBackend) -> None:
    steps = engine(tiny).steps
    with pytest.raises(InvalidRequest) as info:
        await collect(tiny, "y" * (CONTEXT + 10), GREEDY)
    assert info.value.code == "context_length_exceeded"
    assert info.value.param == "prompt"
    assert engine(tiny).steps == steps


async def test_grammar_constrains_output(tiny: LlamaBackend) -> None:
    params = SamplingParams(temperature=1.0, seed=3, max_tokens=12, grammar='root ::= [abc]+ "."')
    text, _, finished = await collect(tiny, "hello", params)
    assert text
    assert set(text.rstrip(".")) <= set("abc"), text
    assert finished.completion_tokens <= 12
    with pytest.raises(InvalidRequest) as info:
        await collect(tiny, "hello", SamplingParams(grammar="root ::= ("))
    assert info.value.param == "grammar"


async def test_concurrent_generations_are_batched_and_match_solo_runs(tiny: LlamaBackend) -> None:
    prompts = [f"prompt number {i}" for i in range(4)]
    cases = [SamplingParams(temperature=0, max_tokens=32)] * 2 + [
        SamplingParams(temperature=0.8, seed=11, max_tokens=32),
        SamplingParams(temperature=0.8, seed=12, max_tokens=32),
    ]
    steps = engine(tiny).steps
    alone = [await collect(tiny, p, params) for p, params in zip(prompts, cases, strict=True)]
    solo_steps = engine(tiny).steps - steps

    eng = engine(tiny)
    steps = eng.steps
    # The tiny model is so fast that one request could finish before the next is submitted: line them
    # up first so they run together.
    with eng.held():
        tasks = [asyncio.create_task(collect(tiny, p, c)) for p, c in zip(prompts, cases, strict=True)]
        await wait_until(lambda: eng.waiting() == 4, "four submitted requests")
    together = await asyncio.gather(*tasks)
    batched_steps = eng.steps - steps

    for solo, joint in zip(alone, together, strict=True):
        assert joint[2].finish_reason == "length" and joint[2].completion_tokens == 32  # never cut
        assert joint[0] == solo[0]
    # Four streams shared decode calls instead of taking turns.
    assert batched_steps < solo_steps / 2


async def test_more_requests_than_slots_all_complete(tiny: LlamaBackend) -> None:
    results = await asyncio.gather(
        *(collect(tiny, f"request {i}", SamplingParams(temperature=0, max_tokens=8)) for i in range(10))
    )
    assert [r[2].completion_tokens for r in results] == [8] * 10


async def test_closing_the_stream_cancels_the_generation(tiny: LlamaBackend) -> None:
    eng = engine(tiny)
    stream = tiny.generate("cancel me", SamplingParams(temperature=0, max_tokens=None, ignore_eos=True))
    assert isinstance(stream, AsyncIterator)
    for _ in range(3):
        assert isinstance(await anext(stream), TextPiece)
    await stream.aclose()  # type: ignore[attr-defined]
    await wait_until(lambda: eng.active() == 0, "the worker to drop the cancelled sequence")
    steps = eng.steps
    await asyncio.sleep(0.05)
    assert eng.steps == steps, "the worker keeps decoding after the stream was closed"
    # The slot is free again and still serves.
    assert (await collect(tiny, "after", GREEDY))[2].completion_tokens == 24


async def test_prompt_prefix_is_reused(tiny: LlamaBackend) -> None:
    eng = engine(tiny)
    prompt = "a shared conversation prefix " * 6
    first = await collect(tiny, prompt, GREEDY)
    reused = eng.reused_tokens
    second = await collect(tiny, prompt, GREEDY)
    assert eng.reused_tokens > reused
    assert second[0] == first[0]  # reading from the cache gives the same result as reading afresh


async def test_prompt_cache_off(tiny_gguf: Path) -> None:
    backend = LlamaBackend(config(context_size=256, prompt_cache_all=False), tiny_gguf.parent)
    await backend.load()
    try:
        await collect(backend, "again and again", GREEDY)
        await collect(backend, "again and again", GREEDY)
        assert engine(backend).reused_tokens == 0
    finally:
        await backend.close()


async def test_prompt_cache_path_survives_a_restart(tmp_path: Path, tiny_gguf: Path) -> None:
    (tmp_path / "tiny.gguf").symlink_to(tiny_gguf)
    cfg = config(context_size=256, prompt_cache_path="cache/tiny.kv")
    prompt = "a long system prompt that a restarted pod should not read again"
    first = LlamaBackend(cfg, tmp_path)
    await first.load()
    expected = await collect(first, prompt, GREEDY)
    await first.close()
    assert (tmp_path / "cache" / "tiny.kv").is_file()

    second = LlamaBackend(cfg, tmp_path)
    await second.load()
    try:
        again = await collect(second, prompt, GREEDY)
        assert engine(second).reused_tokens > 0
        assert again[0] == expected[0]
    finally:
        await second.close()


async def test_embeddings(tiny_gguf: Path) -> None:
    backend = LlamaBackend(config(context_size=256, embeddings=True), tiny_gguf.parent)
    await backend.load()
    try:
        assert backend.capabilities().embeddings
        vectors = await backend.embed(["hello", "world", "hello"])
        assert len(vectors) == 3 and all(len(v) == 64 for v in vectors)
        assert all(abs(sum(x * x for x in v) - 1.0) < 1e-4 for v in vectors)
        assert vectors[0] == pytest.approx(vectors[2], abs=1e-5)
        assert vectors[0] != pytest.approx(vectors[1], abs=1e-3)
        with pytest.raises(InvalidRequest):
            await backend.embed(["z" * 300])
        # The same backend still generates.
        assert (await collect(backend, "hi", GREEDY))[2].completion_tokens == 24
    finally:
        await backend.close()


async def test_embeddings_need_the_flag(tiny: LlamaBackend) -> None:
    with pytest.raises(UnsupportedOperation):
        await tiny.embed(["hello"])


async def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        await LlamaBackend(config("nope.gguf"), tmp_path).load()


async def test_not_a_gguf_file(tmp_path: Path) -> None:
    (tmp_path / "bad.gguf").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        await LlamaBackend(config("bad.gguf"), tmp_path).load()


async def test_truncated_gguf(tmp_path: Path, tiny_gguf: Path) -> None:
    (tmp_path / "cut.gguf").write_bytes(tiny_gguf.read_bytes()[:5000])  # noqa: ASYNC240
    with pytest.raises(ModelLoadError, match="could not load"):
        await LlamaBackend(config("cut.gguf"), tmp_path).load()


async def test_legacy_ggml(tmp_path: Path) -> None:
    (tmp_path / "old.bin").write_bytes(b"tjgg" + b"\x00" * 64)
    with pytest.raises(ModelLoadError, match=r"convert_llama_ggml_to_gguf\.py --input old\.bin"):
        await LlamaBackend(config("old.bin"), tmp_path).load()
    ggml = LlamaGgmlBackend(config("old.bin", backend="llama-ggml"), tmp_path)
    with pytest.raises(ModelLoadError, match="legacy GGML") as info:
        await ggml.load()
    assert "--output new.gguf" in str(info.value)


async def test_bad_options(tiny_gguf: Path) -> None:
    with pytest.raises(ModelLoadError, match="parallel"):
        await LlamaBackend(config(options=["parallel:x"]), tiny_gguf.parent).load()
    with pytest.raises(ModelLoadError, match="cache_type_k"):
        await LlamaBackend(config(cache_type_k="q3_z"), tiny_gguf.parent).load()


async def test_load_time_keys(tiny_gguf: Path) -> None:
    # Every llama.cpp key at once: the model must still load and generate.
    cfg = config(
        context_size=-1,
        threads=1,
        f16=True,
        gpu_layers=0,
        main_gpu="0",
        mmap=False,
        mmlock=False,
        low_vram=True,
        rope_scaling="linear",
        yarn_ext_factor=0.0,
        flash_attention="off",
        cache_type_k="f16",
        cache_type_v="f16",
        grammar='root ::= "ab"',
        parameters={"model": "tiny.gguf", "batch": 64, "rope_freq_base": 10000.0, "rope_freq_scale": 1.0},
        options=["parallel:2"],
    )
    backend = LlamaBackend(cfg, tiny_gguf.parent)
    await backend.load()
    try:
        caps = backend.capabilities()
        assert (caps.context_size, caps.max_concurrency) == (2048, 2)  # -1: the trained context
        # The model's grammar applies when the request brings none.
        text, _, finished = await collect(backend, "hi", SamplingParams(temperature=1.0, max_tokens=10))
        assert (text, finished.finish_reason) == ("ab", "stop")
    finally:
        await backend.close()


@pytest.mark.slow
async def test_gemma_answers(gemma_gguf: Path) -> None:
    backend = LlamaBackend(
        config(gemma_gguf.name, context_size=512, options=["parallel:2"]), gemma_gguf.parent
    )
    await backend.load()
    try:
        # The base model answers a question-shaped prompt; plain "The capital of France is" makes it ramble
        # ("the capital of the country of France…") under greedy decoding.
        text, _, finished = await collect(
            backend, "Q: What is the capital of France?\nA:", SamplingParams(temperature=0, max_tokens=16)
        )
        assert "Paris" in text
        assert finished.completion_tokens <= 16
        assert backend.model_info().bos_token == "<bos>"
    finally:
        await backend.close()
