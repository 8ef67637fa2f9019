"""Per GPU backend, a tiny model made here generates for real on an NVIDIA GPU (`make test-gpu`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from localmodel_runtime.backends.base import Backend, Finished, SamplingParams, TextPiece
from localmodel_runtime.config import ModelConfig

pytestmark = pytest.mark.gpu

import torch  # noqa: E402
import transformers  # noqa: E402, F401

from tests.support.tiny_hf import quantize_gptq, tiny_llama  # noqa: E402

GREEDY = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert torch.cuda.is_available(), "these tests need an NVIDIA GPU"
    root = tmp_path_factory.mktemp("models")
    tiny_llama(root / "tiny", hidden=128, heads=2)
    return root


async def generate(backend: Backend) -> Finished:
    await backend.load()
    try:
        events = [e async for e in backend.generate("hello world", GREEDY)]
    finally:
        await backend.close()
    assert all(isinstance(e, TextPiece) for e in events[:-1])
    last = events[-1]
    assert isinstance(last, Finished) and last.completion_tokens == 8
    return last


def config(backend: str, **keys: Any) -> ModelConfig:
    return ModelConfig.model_validate(
        {"name": "m", "backend": backend, "parameters": {"model": "tiny"}, **keys}
    )


@pytest.mark.parametrize("quantization", [None, "bnb_8bit", "bnb_4bit"])
async def test_transformers_cuda(models: Path, quantization: str | None) -> None:
    from localmodel_runtime.backends.transformers_backend import TransformersBackend

    if quantization:
        import bitsandbytes  # noqa: F401
    cfg = config(
        "transformers", type="AutoModelForCausalLM", main_gpu="cuda.0", f16=True, quantization=quantization
    )
    backend = TransformersBackend(cfg, models)
    await generate(backend)


async def test_vllm(models: Path) -> None:
    import vllm  # noqa: F401

    from localmodel_runtime.backends.vllm_backend import VLLMBackend

    cfg = config("vllm", max_model_len=256, gpu_memory_utilization=0.2, enforce_eager=True)
    await generate(VLLMBackend(cfg, models))


@pytest.mark.parametrize("triton", [False, True])
async def test_autogptq(models: Path, triton: bool) -> None:
    """Quantize the tiny Llama to 4-bit GPTQ on the GPU here (GPTQModel), then serve it through
    `model_base_name` with GPTQModel's best CUDA kernel and, with the legacy `autogptq.triton`, Triton's."""
    from localmodel_runtime.backends.autogptq_backend import AutoGPTQBackend

    base_name = "tiny-GPTQ-4bit-32g"
    if not (models / "tiny-gptq" / f"{base_name}.safetensors").is_file():
        quantize_gptq(models / "tiny", models / "tiny-gptq", weights_base_name=base_name, device="cuda:0")
        torch.cuda.empty_cache()
    legacy = {"autogptq": {"triton": True}} if triton else {}
    cfg = config(
        "autogptq", parameters={"model": "tiny-gptq"}, model_base_name=base_name, main_gpu="cuda.0", **legacy
    )
    await generate(AutoGPTQBackend(cfg, models))


@pytest.mark.parametrize("backend_name", ["exllama2", "exllama"])
async def test_exllamav2(models: Path, backend_name: str) -> None:
    """ExLlamaV2 loads unquantized fp16 Hugging Face checkpoints too: the tiny Llama in fp16 (head size 64,
    dimensions multiples of 32) serves both backend names."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    from localmodel_runtime.backends.exllama_backend import ExLlamaV2Backend

    target = models / "tiny-fp16"
    if not (target / "config.json").is_file():
        LlamaForCausalLM.from_pretrained(models / "tiny", dtype=torch.float16).save_pretrained(target)
        AutoTokenizer.from_pretrained(models / "tiny").save_pretrained(target)
    cfg = config(backend_name, parameters={"model": "tiny-fp16"}, options=["parallel:2"])
    backend = ExLlamaV2Backend(cfg, models)
    assert backend.name == backend_name
    await generate(backend)
