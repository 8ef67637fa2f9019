"""Speculative decoding on the llama backend (`draft_model`, `n_draft`): what comes out is the main
model's own output, whatever the draft guesses — the tiny model drafting for itself (every guess kept)
and another tiny model with the same vocabulary (guesses mostly rejected)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localmodel_runtime.backends.base import Finished, ModelLoadError, SamplingParams, TextPiece
from localmodel_runtime.backends.llama import LlamaBackend
from localmodel_runtime.config import ModelConfig, unsupported_keys
from tests.support.model_configs import TINY_LLAMA, model_config, tiny_gguf_config
from tests.support.router_fixtures import openai_client
from tests.support.runtime_server import RuntimeServer, runtime_server
from tests.support.tiny_gguf import write_tiny_gguf

PROMPTS = ["hello there", "abc", "the quick brown fox jumps"]
GREEDY = SamplingParams(temperature=0, max_tokens=40)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path, gemma_gguf: Path) -> Path:
    directory = tmp_path_factory.mktemp("speculative-models")
    (directory / "tiny.gguf").symlink_to(tiny_gguf)
    write_tiny_gguf(directory / "other.gguf", seed=3)
    (directory / "gemma.gguf").symlink_to(gemma_gguf)
    return directory


def config(**keys: Any) -> ModelConfig:
    return model_config(TINY_LLAMA, options=["parallel:3"], **keys)


async def outputs(models: Path, params: SamplingParams, **keys: Any) -> tuple[list[tuple[str, int]], Any]:
    """Each prompt's text and completion tokens, all generated together; and the draft statistics."""
    backend = LlamaBackend(config(**keys), models)
    await backend.load()

    async def one(prompt: str) -> tuple[str, int]:
        text, finished = "", None
        async for event in backend.generate(prompt, params):
            if isinstance(event, TextPiece):
                text += event.text
            elif isinstance(event, Finished):
                finished = event
        assert finished is not None
        return text, finished.completion_tokens

    try:
        return list(await asyncio.gather(*(one(p) for p in PROMPTS))), backend.draft_stats
    finally:
        await backend.close()


async def test_greedy_output_is_the_same_with_and_without_a_draft(models: Path) -> None:
    plain, none = await outputs(models, GREEDY)
    assert none is None
    itself, stats = await outputs(models, GREEDY, draft_model="tiny.gguf")
    assert itself == plain
    assert stats.drafted > 0 and stats.accepted == stats.drafted  # a model agrees with itself
    other, stats = await outputs(models, GREEDY, draft_model="other.gguf", n_draft=4)
    assert other == plain
    assert stats.drafted > 0 and stats.accepted < stats.drafted


async def test_seeded_sampling_and_max_tokens_are_kept_with_a_draft(models: Path) -> None:
    # One draw of the request's sampler per emitted token, with or without guesses: a seed gives the same.
    sampled = SamplingParams(temperature=0.8, seed=42, max_tokens=30)
    assert (await outputs(models, sampled, draft_model="tiny.gguf"))[0] == (await outputs(models, sampled))[0]
    short = SamplingParams(temperature=0, max_tokens=5)
    drafted, _ = await outputs(models, short, draft_model="tiny.gguf", n_draft=16)
    assert drafted == (await outputs(models, short))[0]
    assert all(tokens == 5 for _, tokens in drafted)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"draft_model": "gemma.gguf"}, "draft_model gemma.gguf has another vocabulary than the model"),
        ({"draft_model": "missing.gguf"}, "does not exist \\(is `draft_model` right\\?\\)"),
    ],
)
async def test_a_draft_that_cannot_serve_fails_the_load(
    models: Path, keys: dict[str, Any], message: str
) -> None:
    backend = LlamaBackend(config(**keys), models)
    with pytest.raises(ModelLoadError, match=message):
        await backend.load()
    await backend.close()


def test_draft_keys_are_served_by_llama_only() -> None:
    assert unsupported_keys(config(draft_model="tiny.gguf", n_draft=4)) == []
    vllm = ModelConfig.model_validate(
        {"backend": "vllm", "draft_model": "d", "parameters": {"model": "org/m"}}
    )
    assert unsupported_keys(vllm) == ["draft_model"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, models: Path) -> Iterator[RuntimeServer]:
    spec = tiny_gguf_config(template={"completion": "{{.Input}}"}, draft_model="other.gguf", n_draft=4)
    with runtime_server(tmp_path_factory.mktemp("speculative"), spec, models) as running:
        yield running


@pytest.mark.parametrize("where", ["runtime", "router"])
async def test_the_served_model_with_a_draft_answers_as_without(
    models: Path, server: RuntimeServer, where: str
) -> None:
    expected = [text for text, _ in (await outputs(models, GREEDY))[0]]
    with openai_client(where, server.base_url, "tiny") as client:
        for prompt, text in zip(PROMPTS, expected, strict=True):
            reply = client.completions.create(model="tiny", prompt=prompt, max_tokens=40, temperature=0)
            assert reply.choices[0].text == text
