"""Each Python-library backend without its library, and with a fake one that records what it is given.

Runs in the base environment: `sys.modules[name] = None` makes `import name` fail even where the
library is installed, and the fakes stand in only where the real library cannot run here (GPU-only).
"""

from __future__ import annotations

import dataclasses
import sys
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from localmodel_runtime.backends.autogptq_backend import AutoGPTQBackend
from localmodel_runtime.backends.base import Backend, BackendUnavailable, Finished, SamplingParams, TextPiece
from localmodel_runtime.backends.exllama_backend import ExLlamaV2Backend
from localmodel_runtime.backends.registry import missing_extra_message
from localmodel_runtime.backends.rwkv_backend import RWKVBackend
from localmodel_runtime.backends.transformers_backend import TransformersBackend
from localmodel_runtime.backends.vllm_backend import VLLMBackend
from localmodel_runtime.config import ModelConfig


def config(backend: str, **keys: Any) -> ModelConfig:
    return ModelConfig.model_validate({"name": "m", "backend": backend, "parameters": {"model": "m"}, **keys})


@pytest.mark.parametrize(
    ("cls", "backend", "hidden", "extra"),
    [
        (TransformersBackend, "transformers", "transformers", "transformers"),
        (TransformersBackend, "sentencetransformers", "torch", "transformers"),
        (VLLMBackend, "vllm", "vllm", "vllm"),
        (AutoGPTQBackend, "autogptq", "gptqmodel", "autogptq"),
        (ExLlamaV2Backend, "exllama", "exllamav2", "exllamav2"),
        (ExLlamaV2Backend, "exllama2", "exllamav2", "exllamav2"),
        (RWKVBackend, "rwkv", "rwkv", "rwkv"),
    ],
)
async def test_missing_library(
    cls: type[Backend], backend: str, hidden: str, extra: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, hidden, None)
    (tmp_path / "m").mkdir()
    instance = cls(config(backend), tmp_path)
    with pytest.raises(BackendUnavailable) as info:
        await instance.load()
    name = "transformers" if backend == "sentencetransformers" else backend
    expected = f"backend {name} needs the `localmodel[{extra}]` extra (pip install 'localmodel[{extra}]')"
    assert str(info.value) == expected
    assert str(info.value) == missing_extra_message(name)


class Recorder:
    """A fake library class: `from_pretrained` / construction record their arguments."""

    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]]

    def __init__(self, name: str, calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> None:
        self.name = name
        self.calls = calls

    def from_pretrained(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((self.name, args, kwargs))
        return types.SimpleNamespace(
            eval=lambda: None,
            config=types.SimpleNamespace(max_position_embeddings=128),
            can_generate=lambda: True,
            chat_template="{{ messages }}",
            bos_token="<s>",
            eos_token="</s>",
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((self.name, args, kwargs))
        return kwargs


def fake_torch(cuda_devices: int, bf16: bool) -> types.ModuleType:
    torch = types.ModuleType("torch")
    torch.cuda = types.SimpleNamespace(  # type: ignore[attr-defined]
        is_available=lambda: cuda_devices > 0,
        device_count=lambda: cuda_devices,
        is_bf16_supported=lambda: bf16,
    )
    torch.xpu = types.SimpleNamespace(is_available=lambda: False)  # type: ignore[attr-defined]
    torch.float16, torch.bfloat16, torch.float32 = "T.float16", "T.bfloat16", "T.float32"  # type: ignore[attr-defined]
    torch.set_num_threads = lambda n: None  # type: ignore[attr-defined]
    return torch


async def test_transformers_cuda_bnb_kwargs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    tf = types.ModuleType("transformers")
    for name in ("AutoModelForCausalLM", "AutoModel", "AutoTokenizer", "BitsAndBytesConfig"):
        setattr(tf, name, Recorder(name, calls))
    monkeypatch.setitem(sys.modules, "torch", fake_torch(cuda_devices=2, bf16=True))
    monkeypatch.setitem(sys.modules, "transformers", tf)
    monkeypatch.setitem(sys.modules, "bitsandbytes", types.ModuleType("bitsandbytes"))
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object())
    (tmp_path / "m").mkdir()
    cfg = config(
        "transformers",
        type="AutoModelForCausalLM",
        main_gpu="cuda.1",
        f16=True,
        quantization="bnb_4bit",
        context_size=64,
        template={"use_tokenizer_template": True},
    )
    backend = TransformersBackend(cfg, tmp_path)
    await backend.load()
    path = str(tmp_path / "m")
    assert calls == [
        (
            "BitsAndBytesConfig",
            (),
            {
                "load_in_4bit": True,
                "bnb_4bit_compute_dtype": "T.bfloat16",
                "bnb_4bit_quant_type": "nf4",
                "bnb_4bit_use_double_quant": True,
            },
        ),
        (
            "AutoModelForCausalLM",
            (path,),
            {
                "trust_remote_code": False,
                "use_safetensors": True,
                "dtype": "T.bfloat16",
                "device_map": "cuda:1",
                "quantization_config": calls[0][2],
            },
        ),
        ("AutoTokenizer", (path,), {"trust_remote_code": False}),
    ]
    assert backend.capabilities().context_size == 64
    assert backend.model_info().chat_template == "{{ messages }}"


async def test_transformers_bnb_without_bitsandbytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tf = types.ModuleType("transformers")
    monkeypatch.setitem(sys.modules, "torch", fake_torch(cuda_devices=1, bf16=False))
    monkeypatch.setitem(sys.modules, "transformers", tf)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    (tmp_path / "m").mkdir()
    backend = TransformersBackend(config("transformers", quantization="bnb_8bit"), tmp_path)
    with pytest.raises(BackendUnavailable) as info:
        await backend.load()
    assert str(info.value) == (
        "backend transformers needs the `localmodel[bnb]` extra for quantization bnb_8bit "
        "(pip install 'localmodel[bnb]')"
    )


async def test_transformers_openvino_without_optimum(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", fake_torch(cuda_devices=0, bf16=False))
    monkeypatch.setitem(sys.modules, "transformers", types.ModuleType("transformers"))
    monkeypatch.setitem(sys.modules, "optimum.intel", None)
    (tmp_path / "m").mkdir()
    backend = TransformersBackend(config("transformers", type="OVModelForCausalLM"), tmp_path)
    with pytest.raises(
        BackendUnavailable, match=r"`localmodel\[openvino\]` extra for type OVModelForCausalLM"
    ):
        await backend.load()


@dataclasses.dataclass
class FakeEngineArgs:
    model: str
    trust_remote_code: bool = False
    quantization: str | None = None
    gpu_memory_utilization: float = 0.9
    enforce_eager: bool = False
    max_model_len: int | None = None
    tensor_parallel_size: int = 1
    max_num_seqs: int = 128


class FakeEngine:
    aborted: list[str]

    def __init__(self, args: FakeEngineArgs) -> None:
        self.args = args
        self.aborted = []

    @classmethod
    def from_engine_args(cls, args: FakeEngineArgs) -> FakeEngine:
        return cls(args)

    async def get_tokenizer(self) -> Any:
        return types.SimpleNamespace(
            encode=lambda text, add_special_tokens: [1] * len(text.split()),
            chat_template=None,
            bos_token="<s>",
            eos_token="</s>",
        )

    def get_model_config(self) -> Any:
        return types.SimpleNamespace(max_model_len=self.args.max_model_len or 2048)

    async def generate(self, prompt: dict[str, Any], sampling: Any, request_id: str) -> AsyncIterator[Any]:
        text = ""
        for i, word in enumerate(["Hel", "lo", " there"]):
            text += word
            done = i == 2
            completion = types.SimpleNamespace(
                text=text, token_ids=list(range(i + 1)), finish_reason="length"
            )
            yield types.SimpleNamespace(outputs=[completion], finished=done)

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)


async def test_vllm_engine_args_streaming_and_abort(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vllm = types.ModuleType("vllm")
    vllm.AsyncEngineArgs = FakeEngineArgs  # type: ignore[attr-defined]
    vllm.AsyncLLMEngine = FakeEngine  # type: ignore[attr-defined]
    vllm.SamplingParams = lambda **kwargs: kwargs  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    (tmp_path / "m").mkdir()
    cfg = config("vllm", quantization="awq", enforce_eager=True, swap_space=4, max_model_len=512)
    backend = VLLMBackend(cfg, tmp_path)
    await backend.load()
    engine = backend._engine
    assert isinstance(engine, FakeEngine)
    # swap_space is not a field of this (fake) vLLM: dropped with a warning, the rest passed as given.
    assert engine.args == FakeEngineArgs(
        model=str(tmp_path / "m"), quantization="awq", enforce_eager=True, max_model_len=512
    )
    caps = backend.capabilities()
    assert (caps.max_concurrency, caps.context_size) == (128, 512)
    events = [e async for e in backend.generate("say hello", SamplingParams(max_tokens=3))]
    assert events == [
        TextPiece("Hel", tokens=1),
        TextPiece("lo", tokens=1),
        TextPiece(" there", tokens=1),
        Finished("length", 2, 3),
    ]
    assert engine.aborted == []
    stream = backend.generate("say hello", SamplingParams())
    assert isinstance(stream, AsyncIterator)
    await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    assert len(engine.aborted) == 1
