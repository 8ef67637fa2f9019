"""LoRA adapters on the llama backend: `lora_adapter` and `lora_adapters` with `lora_scales`, on the tiny
random GGUF with tiny generated adapters (tests/support/tiny_lora.py); greedy output shows what is applied."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localmodel_runtime.backends.base import ModelLoadError, SamplingParams, TextPiece
from localmodel_runtime.backends.llama import LlamaBackend
from localmodel_runtime.config import ModelConfig, unsupported_keys
from tests.support.model_configs import TINY_LLAMA, model_config, tiny_gguf_config
from tests.support.router_fixtures import openai_client
from tests.support.runtime_server import RuntimeServer, runtime_server
from tests.support.tiny_lora import write_tiny_lora

PROMPT = "hello there"
GREEDY = SamplingParams(temperature=0, max_tokens=16)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Path:
    directory = tmp_path_factory.mktemp("lora-models")
    (directory / "tiny.gguf").symlink_to(tiny_gguf)
    write_tiny_lora(directory / "a.gguf", seed=1)
    write_tiny_lora(directory / "a-negated.gguf", seed=1, sign=-1.0)
    write_tiny_lora(directory / "b.gguf", seed=7)
    write_tiny_lora(directory / "too-narrow.gguf", n_embd=32)
    write_tiny_lora(directory / "other-arch.gguf", architecture="gemma3")
    return directory


def config(**keys: Any) -> ModelConfig:
    return model_config(TINY_LLAMA, **keys)


async def greedy(models: Path, **keys: Any) -> str:
    backend = LlamaBackend(config(**keys), models)
    await backend.load()
    try:
        text = ""
        async for event in backend.generate(PROMPT, GREEDY):
            if isinstance(event, TextPiece):
                text += event.text
        return text
    finally:
        await backend.close()


async def test_an_adapter_changes_greedy_output(models: Path) -> None:
    base = await greedy(models)
    adapted = await greedy(models, lora_adapter="a.gguf")
    assert adapted != base
    # The same adapter named in lora_adapters is the same model.
    assert await greedy(models, lora_adapters=["a.gguf"]) == adapted
    assert await greedy(models, lora_adapters=["b.gguf"]) not in (base, adapted)


async def test_several_adapters_are_applied_with_their_scales(models: Path) -> None:
    base = await greedy(models)
    adapted = await greedy(models, lora_adapters=["a.gguf"])
    # An adapter and its exact opposite cancel out; two halves make the whole; scale 0 switches it off.
    assert await greedy(models, lora_adapters=["a.gguf", "a-negated.gguf"]) == base
    assert await greedy(models, lora_adapters=["a.gguf", "a.gguf"], lora_scales=[0.5, 0.5]) == adapted
    assert await greedy(models, lora_adapters=["a.gguf"], lora_scales=[0.0]) == base
    # lora_adapter (full strength at lora_scale 0, LocalAI's "unset") goes together with lora_adapters.
    assert await greedy(models, lora_adapter="a.gguf", lora_adapters=["a-negated.gguf"]) == base


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"lora_adapters": ["missing.gguf"]}, "lora_adapters[0]: the LoRA adapter"),
        ({"lora_adapter": "missing.gguf"}, "lora_adapter: the LoRA adapter"),
        ({"lora_adapters": ["a.gguf", "too-narrow.gguf"]}, "lora_adapters[1]: llama.cpp could not load"),
        ({"lora_adapters": ["other-arch.gguf"]}, "lora_adapters[0]: llama.cpp could not load"),
        ({"lora_adapters": ["a.gguf"], "lora_scales": [1.0, 0.5]}, "lora_scales has 2 values"),
    ],
)
async def test_adapters_that_cannot_apply_fail_the_load(
    models: Path, keys: dict[str, Any], message: str
) -> None:
    backend = LlamaBackend(config(**keys), models)
    with pytest.raises(ModelLoadError, match=message.replace("[", r"\[").replace("]", r"\]")):
        await backend.load()
    await backend.close()


def test_lora_keys_are_served_by_llama_only() -> None:
    keys = {"lora_adapters": ["a.gguf"], "lora_scales": [0.5]}
    assert unsupported_keys(config(**keys)) == []
    hf = ModelConfig.model_validate({"backend": "vllm", "parameters": {"model": "org/repo"}, **keys})
    assert unsupported_keys(hf) == ["lora_adapters", "lora_scales"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, models: Path) -> Iterator[RuntimeServer]:
    spec = tiny_gguf_config(
        template={"completion": "{{.Input}}"}, lora_adapters=["a.gguf", "b.gguf"], lora_scales=[1.0, 0.0]
    )
    with runtime_server(tmp_path_factory.mktemp("lora"), spec, models) as running:
        yield running


@pytest.mark.parametrize("where", ["runtime", "router"])
async def test_the_served_model_answers_with_its_adapters(
    models: Path, server: RuntimeServer, where: str
) -> None:
    expected = await greedy(models, lora_adapters=["a.gguf"])
    with openai_client(where, server.base_url, "tiny") as client:
        reply = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=16, temperature=0)
    assert reply.choices[0].text == expected
    assert reply.choices[0].text != await greedy(models)
