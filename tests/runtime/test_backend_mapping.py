"""The Python-library backends' option mapping, tested up to the library boundary (no library needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from localmodel_runtime.backends.autogptq_backend import base_name, checkpoint_view, load_kwargs
from localmodel_runtime.backends.base import InvalidRequest, ModelLoadError, SamplingParams
from localmodel_runtime.backends.exllama_backend import gpu_split, sampler_settings
from localmodel_runtime.backends.hf.decoder import IncrementalDecoder
from localmodel_runtime.backends.hf.devices import (
    bnb_settings,
    openvino_config,
    openvino_device,
    torch_device,
    torch_dtype,
)
from localmodel_runtime.backends.hf.model_location import model_location
from localmodel_runtime.backends.hf.requests import context_size, generate_kwargs, new_tokens, stop_words
from localmodel_runtime.backends.rwkv_backend import model_files, strategy
from localmodel_runtime.backends.transformers_backend import model_type, pretrained_kwargs
from localmodel_runtime.backends.vllm_backend import engine_kwargs, sampling_kwargs, supported_kwargs
from localmodel_runtime.config import ModelConfig
from localmodel_runtime.stops import StopMatcher
from tests.support.model_configs import model_config


def config(**keys: Any) -> ModelConfig:
    return model_config({"parameters": {"model": "m"}}, **keys)


@pytest.mark.parametrize(
    ("main_gpu", "cuda", "expected"),
    [
        (None, 0, "cpu"),
        (None, 2, "cuda:0"),
        ("cuda", 1, "cuda:0"),
        ("cuda.1", 2, "cuda:1"),
        ("cuda:1", 2, "cuda:1"),
        ("1", 2, "cuda:1"),
        ("CPU", 2, "cpu"),
    ],
)
def test_torch_device(main_gpu: str | None, cuda: int, expected: str) -> None:
    assert torch_device(main_gpu, cuda_devices=cuda) == expected


def test_torch_device_errors() -> None:
    with pytest.raises(ModelLoadError, match="no CUDA device"):
        torch_device("cuda.0", cuda_devices=0)
    with pytest.raises(ModelLoadError, match="1 CUDA device"):
        torch_device("cuda.1", cuda_devices=1)
    with pytest.raises(ModelLoadError, match="not a torch device"):
        torch_device("AUTO:-CPU", cuda_devices=1)
    with pytest.raises(ModelLoadError, match="Intel XPU"):
        torch_device("xpu", cuda_devices=0)
    assert torch_device(None, cuda_devices=0, xpu_available=True) == "xpu"
    assert torch_device("xpu.1", cuda_devices=0, xpu_available=True) == "xpu:1"


def test_torch_dtype() -> None:
    assert torch_dtype("cpu", f16=True, dtype=None, bf16_supported=False) == "float32"
    assert torch_dtype("cuda:0", f16=None, dtype=None, bf16_supported=True) == "float16"
    assert torch_dtype("cuda:0", f16=True, dtype=None, bf16_supported=True) == "bfloat16"
    assert torch_dtype("cuda:0", f16=True, dtype=None, bf16_supported=False) == "float16"
    assert torch_dtype("xpu", f16=None, dtype=None, bf16_supported=False) == "float16"
    assert torch_dtype("cpu", f16=None, dtype="bf16", bf16_supported=False) == "bfloat16"
    with pytest.raises(ModelLoadError, match="dtype must be one of"):
        torch_dtype("cpu", f16=None, dtype="int3", bf16_supported=False)


def test_bnb_settings() -> None:
    assert bnb_settings(None, "cuda:0", "float16") is None
    assert bnb_settings("bnb_4bit", "cuda:0", "bfloat16") == {
        "load_in_4bit": True,
        "bnb_4bit_compute_dtype": "bfloat16",
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": True,
    }
    assert bnb_settings("bnb_8bit", "cuda:0", "float16") == {"load_in_8bit": True}
    assert bnb_settings("xpu_8bit", "xpu", "float16") == {"load_in_8bit": True}
    assert bnb_settings("xpu_4bit", "xpu:0", "float16")["load_in_4bit"] is True  # type: ignore[index]
    with pytest.raises(ModelLoadError, match="needs an Intel XPU"):
        bnb_settings("xpu_4bit", "cuda:0", "float16")
    with pytest.raises(ModelLoadError, match="bnb_8bit, bnb_4bit, xpu_8bit, xpu_4bit"):
        bnb_settings("awq", "cuda:0", "float16")


@pytest.mark.parametrize(
    ("main_gpu", "available", "expected"),
    [
        (None, ["CPU"], "AUTO"),
        (None, ["CPU", "GPU.0"], "AUTO:GPU,CPU"),
        ("AUTO:-CPU", ["CPU"], "AUTO:-CPU"),
        ("cpu", ["CPU"], "CPU"),
        ("GPU.1", [], "GPU.1"),
        ("NPU", [], "NPU"),
        ("MULTI:GPU,CPU", [], "MULTI:GPU,CPU"),
        ("HETERO:GPU,CPU", [], "HETERO:GPU,CPU"),
    ],
)
def test_openvino_device(main_gpu: str | None, available: list[str], expected: str) -> None:
    assert openvino_device(main_gpu, available) == expected


def test_openvino_device_rejects_torch_names_and_config() -> None:
    with pytest.raises(ModelLoadError, match="not an OpenVINO device"):
        openvino_device("cuda.0", ["CPU"])
    assert openvino_config("AUTO", None) == {"PERFORMANCE_HINT": "CUMULATIVE_THROUGHPUT"}
    assert openvino_config("CPU", 3) == {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": "3"}
    assert openvino_config("AUTO:GPU,CPU", 2)["DEVICE_PROPERTIES"] == "{CPU:{INFERENCE_NUM_THREADS:2}}"
    assert "DEVICE_PROPERTIES" not in openvino_config("AUTO:-CPU", 2)


def test_openvino_config_keeps_one_cpu_thread_at_f32() -> None:
    # OpenVINO's CPU plugin dies with SIGFPE for one thread at bf16 (AMX CPUs' default precision).
    assert openvino_config("CPU", 1) == {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": "1",
        "INFERENCE_PRECISION_HINT": "f32",
    }
    assert openvino_config("AUTO", 1)["DEVICE_PROPERTIES"] == (
        "{CPU:{INFERENCE_NUM_THREADS:1,INFERENCE_PRECISION_HINT:f32}}"
    )
    assert "INFERENCE_PRECISION_HINT" not in openvino_config("CPU", 2)
    assert "DEVICE_PROPERTIES" not in openvino_config("GPU", 1)


def test_model_location(tmp_path: Path) -> None:
    (tmp_path / "local").mkdir()
    assert model_location(config(parameters={"model": "local"}), tmp_path) == str(tmp_path / "local")
    assert model_location(config(parameters={"model": "owner/repo"}), tmp_path) == "owner/repo"
    with pytest.raises(ModelLoadError, match="does not exist"):
        model_location(config(parameters={"model": "missing"}), tmp_path)
    with pytest.raises(ModelLoadError, match="does not exist"):
        model_location(config(parameters={"model": "owner/repo"}), tmp_path, allow_repo_id=False)
    with pytest.raises(ModelLoadError, match=r"parameters\.model is not set"):
        model_location(ModelConfig.model_validate({"name": "m"}), tmp_path)


def test_model_type_and_pretrained_kwargs() -> None:
    assert model_type(config()) == "AutoModel"
    assert model_type(config(type="automodelforcausallm")) == "AutoModelForCausalLM"
    assert model_type(config(backend="sentencetransformers", type="AutoModel")) == "SentenceTransformer"
    assert model_type(config(backend="huggingface-embeddings")) == "SentenceTransformer"
    with pytest.raises(ModelLoadError, match="MusicgenForConditionalGeneration"):
        model_type(config(type="MusicgenForConditionalGeneration"))
    assert pretrained_kwargs(config(), "cpu", "float32", None) == {
        "trust_remote_code": False,
        "use_safetensors": True,
        "dtype": "float32",
    }
    quant = object()
    assert pretrained_kwargs(config(trust_remote_code=True), "cuda:1", "bfloat16", quant) == {
        "trust_remote_code": True,
        "use_safetensors": True,
        "dtype": "bfloat16",
        "device_map": "cuda:1",
        "quantization_config": quant,
    }


def test_context_and_stops() -> None:
    assert context_size(config(), None) == 2048
    assert context_size(config(), 512) == 512
    assert context_size(config(context_size=-1), 512) == 512
    assert context_size(config(context_size=100), 512) == 100
    assert new_tokens(SamplingParams(max_tokens=None), 10, 100) == 90
    assert new_tokens(SamplingParams(max_tokens=5), 10, 100) == 5
    assert new_tokens(SamplingParams(max_tokens=500), 10, 100) == 90
    words = stop_words(config(stopwords=["<|eot_id|>", "x"]), SamplingParams(stop=["x", "", "y"]))
    assert words == ["<|eot_id|>", "x", "y"]


def test_generate_kwargs() -> None:
    greedy = generate_kwargs(SamplingParams(temperature=0, max_tokens=3), 3)
    assert greedy == {
        "max_new_tokens": 3,
        "do_sample": False,
        "temperature": None,
        "top_p": None,
        "top_k": None,
    }
    sampled = generate_kwargs(
        SamplingParams(
            temperature=0.5,
            top_p=0.9,
            top_k=7,
            min_p=0.05,
            typical_p=0.8,
            repeat_penalty=1.1,
            logit_bias={5: -2.0},
            ignore_eos=True,
        ),
        20,
    )
    assert sampled == {
        "max_new_tokens": 20,
        "do_sample": True,
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 7,
        "min_p": 0.05,
        "typical_p": 0.8,
        "repetition_penalty": 1.1,
        "sequence_bias": [[[5], -2.0]],
        "min_new_tokens": 20,
    }
    with pytest.raises(InvalidRequest, match="grammars"):
        generate_kwargs(SamplingParams(grammar="root ::= x"), 1)


def test_incremental_decoder_holds_back_partial_characters() -> None:
    table = {1: b"he", 2: b"llo", 3: b"\xe2\x98", 4: b"\x83", 5: b" !"}

    def decode(ids: list[int]) -> str:
        return b"".join(table[i] for i in ids).decode("utf-8", errors="replace")

    decoder = IncrementalDecoder(decode)
    assert [decoder.push([i]) for i in (1, 2, 3, 4, 5)] == ["he", "llo", "", "☃", " !"]
    assert decoder.tokens == 5


def test_stop_matcher_across_pieces() -> None:
    matcher = StopMatcher(["</s>", "STOP"])
    assert matcher.feed("hello <") == "hello "  # "<" may begin "</s>": held back
    assert not matcher.stopped
    assert matcher.feed("/s> more") == ""
    assert matcher.stopped
    assert matcher.feed("after") == "" and matcher.flush() == ""
    other = StopMatcher(["STOP"])
    assert other.feed("abc STOP def") == "abc "
    assert StopMatcher([]).feed("x") == "x"


def test_a_stop_word_split_over_two_tokens_never_reaches_the_client() -> None:
    matcher = StopMatcher(["</s>"])
    assert matcher.feed("abc</s") == "abc"
    assert matcher.feed(">") == "" and matcher.stopped


def test_held_text_that_began_no_stop_word_comes_out() -> None:
    matcher = StopMatcher(["</s>"])
    assert matcher.feed("a <") == "a "
    assert matcher.feed("b") == "<b"  # not a stop word after all
    assert matcher.feed("c </") == "c "
    assert matcher.flush() == "</"  # the stream ended there


def test_vllm_engine_kwargs() -> None:
    cfg = config(
        quantization="awq",
        gpu_memory_utilization=0.5,
        trust_remote_code=True,
        enforce_eager=True,
        swap_space=2,
        max_model_len=32768,
        tensor_parallel_size=2,
        dtype="bfloat16",
        engine_args={"max_num_seqs": 64},
    )
    assert engine_kwargs(cfg, "/models/m") == {
        "model": "/models/m",
        "trust_remote_code": True,
        "quantization": "awq",
        "gpu_memory_utilization": 0.5,
        "enforce_eager": True,
        "swap_space": 2,
        "max_model_len": 32768,
        "tensor_parallel_size": 2,
        "dtype": "bfloat16",
        "max_num_seqs": 64,
    }
    minimal = engine_kwargs(config(context_size=1024, tensor_parallel_size=0), "m")
    assert minimal == {"model": "m", "trust_remote_code": False, "max_model_len": 1024}
    assert supported_kwargs({"model": "m", "swap_space": 4}, {"model"}) == {"model": "m"}


def test_vllm_sampling_kwargs() -> None:
    params = SamplingParams(temperature=0, seed=7, logit_bias={3: 1.5}, max_tokens=9)
    assert sampling_kwargs(params, 9, ["</s>"]) == {
        "n": 1,
        "max_tokens": 9,
        "temperature": 0.0,
        "top_p": 1.0,
        "top_k": -1,
        "min_p": 0.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "repetition_penalty": 1.0,
        "ignore_eos": False,
        "stop": ["</s>"],
        "skip_special_tokens": True,
        "seed": 7,
        "logit_bias": {3: 1.5},
    }
    sampled = sampling_kwargs(SamplingParams(temperature=0.7, top_k=0, seed=-1), 4, [])
    assert sampled["top_k"] == -1 and sampled["top_p"] == 0.95 and "seed" not in sampled


def test_autogptq_load_kwargs() -> None:
    cfg = config(model_base_name="orca_mini_v2_13b-GPTQ-4bit-128g.no-act.order")
    assert load_kwargs(cfg, "cuda:0") == {"device": "cuda:0", "trust_remote_code": False, "backend": "auto"}
    assert base_name(cfg) == "orca_mini_v2_13b-GPTQ-4bit-128g.no-act.order"
    legacy = config(
        autogptq={"model_base_name": "w", "device": "cuda:1", "triton": True}, trust_remote_code=True
    )
    assert load_kwargs(legacy, "cuda:0") == {
        "device": "cuda:1",
        "trust_remote_code": True,
        "backend": "gptq_triton",
    }
    assert base_name(legacy) == "w"
    assert base_name(config()) is None


def test_autogptq_checkpoint_view(tmp_path: Path) -> None:
    repo = tmp_path / "orca-GPTQ"
    repo.mkdir()
    for name in (
        "config.json",
        "quantize_config.json",
        "tokenizer.json",
        "w-4bit.safetensors",
        "other.safetensors",
    ):
        (repo / name).write_text(name)
    scratch = tmp_path / "scratch"
    # GPTQModel's own names need no view.
    assert checkpoint_view(repo, None, scratch) == repo
    assert checkpoint_view(repo, "model", scratch) == repo
    view = checkpoint_view(repo, "w-4bit", scratch)
    assert view == scratch / "orca-GPTQ"
    assert sorted(p.name for p in view.iterdir()) == [
        "config.json",
        "model.safetensors",
        "quantize_config.json",
        "tokenizer.json",
    ]
    assert (view / "model.safetensors").read_text() == "w-4bit.safetensors"
    assert (view / "config.json").resolve() == (repo / "config.json").resolve()
    with pytest.raises(
        ModelLoadError, match=r"missing.safetensors is not in .*: other.safetensors, w-4bit.safetensors"
    ):
        checkpoint_view(repo, "missing", scratch)
    (repo / "old.bin").write_text("torch pickle")
    with pytest.raises(ModelLoadError, match=r"GPTQ weights must be safetensors"):
        checkpoint_view(repo, "old", scratch)


def test_exllama_mapping() -> None:
    assert sampler_settings(SamplingParams(temperature=0))["top_k"] == 1
    settings = sampler_settings(SamplingParams(temperature=0.6, top_k=20, repeat_penalty=1.2, mirostat=2))
    assert settings == {
        "temperature": 0.6,
        "top_k": 20,
        "top_p": 0.95,
        "min_p": 0.0,
        "typical": 0.0,
        "token_repetition_penalty": 1.2,
        "token_presence_penalty": 0.0,
        "token_frequency_penalty": 0.0,
        "mirostat": True,
        "mirostat_tau": 5.0,
        "mirostat_eta": 0.1,
    }
    assert gpu_split("20,4") == [20.0, 4.0]
    assert gpu_split(None) is None
    with pytest.raises(ModelLoadError, match="tensor_split"):
        gpu_split("a,b")


def test_rwkv_files_and_strategy(tmp_path: Path) -> None:
    (tmp_path / "rwkv_small.pth").write_bytes(b"x")
    (tmp_path / "rwkv_small.tokenizer.json").write_text("{}")
    weights, tokenizer = model_files(config(parameters={"model": "rwkv_small"}), tmp_path)
    assert (weights.name, tokenizer.name) == ("rwkv_small.pth", "rwkv_small.tokenizer.json")
    assert model_files(config(parameters={"model": "rwkv_small.pth"}), tmp_path)[0] == weights
    (tmp_path / "old").write_bytes(b"ggmf....")
    with pytest.raises(ModelLoadError, match=r"rwkv\.cpp"):
        model_files(config(parameters={"model": "old"}), tmp_path)
    (tmp_path / "lonely.pth").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match=r"lonely\.tokenizer\.json does not exist"):
        model_files(config(parameters={"model": "lonely"}), tmp_path)
    assert strategy(config(), 0) == "cpu fp32"
    assert strategy(config(), 1) == "cuda:0 fp16"
    assert strategy(config(main_gpu="cuda.1", dtype="bf16"), 2) == "cuda:1 bf16"
    assert (
        strategy(config(options=["strategy:cuda fp16i8 *10 -> cpu fp32"]), 1) == "cuda fp16i8 *10 -> cpu fp32"
    )
