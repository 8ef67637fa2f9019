"""Pure helpers shared by the Python-library backends (transformers, AutoGPTQ, vLLM, ExLlamaV2, RWKV).

Everything here maps LocalAI model-YAML keys onto library arguments without importing any library,
so the mapping is tested in the base environment: where the model lives, which torch device and
dtype `main_gpu` / `f16` select, which OpenVINO device and properties, the bitsandbytes settings of
`quantization`, the `generate()` keyword arguments of a request, and the incremental detokenizer and
stop-word matcher that streaming uses.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..config import BACKEND_EXTRAS, ModelConfig, canonical_backend
from .base import BackendUnavailable, InvalidRequest, ModelLoadError, SamplingParams

DEFAULT_CONTEXT = 2048
"""Context when neither `context_size` nor the model's config says one."""


def unavailable(backend: str, extra: str | None = None, purpose: str = "") -> BackendUnavailable:
    """The error for a missing library: names the `localmodel[extra]` that brings it (the operator
    reads this message from the pod and reports `MissingBackend`)."""
    extra = extra or BACKEND_EXTRAS.get(backend, backend)
    purpose = f" for {purpose}" if purpose else ""
    return BackendUnavailable(
        f"backend {backend} needs the `localmodel[{extra}]` extra{purpose} "
        f"(pip install 'localmodel[{extra}]')"
    )


def served_name(config: ModelConfig, default: str) -> str:
    """The canonical backend name the config asked for (e.g. `exllama` or `exllama2`)."""
    return canonical_backend(config.backend) or default


def model_location(config: ModelConfig, models_dir: Path, *, allow_repo_id: bool = True) -> str:
    """`parameters.model` as a path in the models directory, or a Hugging Face repository id.

    A name that exists under the models directory is used from there; `owner/name` that does not is
    passed on as a repository id (the library resolves it from its cache); anything else is an error.
    """
    model = config.model_file
    if not model:
        raise ModelLoadError(
            "parameters.model is not set: name a model directory in the models directory"
            + (" or a Hugging Face repository id" if allow_repo_id else "")
        )
    local = models_dir / model
    if local.exists():
        return str(local)
    if allow_repo_id and re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", model) and ".." not in model:
        return model
    raise ModelLoadError(f"model {local} does not exist (is `parameters.model` right?)")


def usable_cpus() -> int:
    """CPUs this process may run on (a pod's cpuset), which os.cpu_count() does not see."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# -- torch devices, dtypes and quantization ---------------------------------------------------------

_DTYPES = {
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "f16": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "f32": "float32",
    "auto": "auto",
}


def torch_device(main_gpu: str | None, *, cuda_devices: int, xpu_available: bool = False) -> str:
    """The torch device `main_gpu` selects: `cuda`, `cuda.N` (also `cuda:N`, `N`), `xpu[.N]`, `cpu`.

    Unset: the first CUDA device when there is one, else an Intel XPU, else the CPU (LocalAI's order).
    """
    value = (main_gpu or "").strip().lower()
    if not value:
        return "cuda:0" if cuda_devices else "xpu" if xpu_available else "cpu"
    if value == "cpu":
        return "cpu"
    xpu = re.fullmatch(r"xpu(?:[.:](\d+))?", value)
    if xpu:
        if not xpu_available:
            raise ModelLoadError(f"main_gpu {main_gpu!r} asks for an Intel XPU but torch sees none")
        return f"xpu:{xpu.group(1)}" if xpu.group(1) else "xpu"
    cuda = re.fullmatch(r"cuda(?:[.:](\d+))?|(\d+)", value)
    if not cuda:
        raise ModelLoadError(
            f"main_gpu {main_gpu!r} is not a torch device: use cuda, cuda.N, xpu or cpu "
            "(OpenVINO devices such as AUTO:-CPU need type OVModelForCausalLM or OVModelForFeatureExtraction)"
        )
    index = int(cuda.group(1) or cuda.group(2) or 0)
    if cuda_devices == 0:
        raise ModelLoadError(f"main_gpu {main_gpu!r} asks for CUDA but torch sees no CUDA device")
    if index >= cuda_devices:
        raise ModelLoadError(f"main_gpu {main_gpu!r}: torch sees {cuda_devices} CUDA device(s), 0-based")
    return f"cuda:{index}"


def torch_dtype(device: str, *, f16: bool | None, dtype: str | None, bf16_supported: bool) -> str:
    """The weights dtype: `dtype` when set; on CUDA float16, or bfloat16 with `f16: true` when the GPU
    supports it (LocalAI's "inference precision"); float16 on an XPU; float32 on the CPU."""
    if dtype:
        name = _DTYPES.get(dtype.strip().lower())
        if name is None:
            raise ModelLoadError(f"dtype must be one of {sorted(set(_DTYPES.values()))}, got {dtype!r}")
        return name
    if device.startswith("cuda"):
        return "bfloat16" if f16 and bf16_supported else "float16"
    if device.startswith("xpu"):
        return "float16"
    return "float32"


TRANSFORMERS_QUANTIZATIONS = ("bnb_8bit", "bnb_4bit", "xpu_8bit", "xpu_4bit")


def bnb_settings(quantization: str | None, device: str, compute_dtype: str) -> dict[str, Any] | None:
    """`BitsAndBytesConfig` keyword arguments for the transformers `quantization` key (None: none).

    bitsandbytes runs on CUDA and, since 0.46, natively on Intel XPUs, so `xpu_4bit` / `xpu_8bit` are
    the same settings on an XPU device (LocalAI's old intel-extension path is archived upstream).
    """
    if not quantization:
        return None
    method = quantization.strip().lower()
    if method not in TRANSFORMERS_QUANTIZATIONS:
        raise ModelLoadError(
            f"quantization {quantization!r} is not one the transformers backend knows: "
            f"{', '.join(TRANSFORMERS_QUANTIZATIONS)}"
        )
    if method.startswith("xpu") and not device.startswith("xpu"):
        raise ModelLoadError(f"quantization {method} needs an Intel XPU device (main_gpu: xpu), not {device}")
    if method.endswith("4bit"):
        return {
            "load_in_4bit": True,
            "bnb_4bit_compute_dtype": compute_dtype,
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_use_double_quant": True,
        }
    return {"load_in_8bit": True}


# -- OpenVINO ---------------------------------------------------------------------------------------

_OV_DEVICE = re.compile(
    r"(?:AUTO|MULTI|HETERO|BATCH)(?::-?[A-Z]+(?:\.\d+)?(?:,-?[A-Z]+(?:\.\d+)?)*)?|(?:CPU|GPU|NPU)(?:\.\d+)?"
)


def openvino_device(main_gpu: str | None, available: Sequence[str]) -> str:
    """The OpenVINO device: `main_gpu` verbatim (AUTO, CPU, GPU[.N], NPU, MULTI:…, HETERO:…, AUTO:-CPU);
    unset: AUTO, preferring a GPU when OpenVINO sees one (LocalAI's choice)."""
    value = (main_gpu or "").strip().upper()
    if not value:
        return "AUTO:GPU,CPU" if any(d.startswith("GPU") for d in available) else "AUTO"
    if not _OV_DEVICE.fullmatch(value):
        raise ModelLoadError(
            f"main_gpu {main_gpu!r} is not an OpenVINO device: use AUTO, CPU, GPU, GPU.N, NPU, "
            "MULTI:<devices>, HETERO:<devices> or AUTO:<devices> (e.g. AUTO:-CPU)"
        )
    return value


def openvino_config(device: str, threads: int | None) -> dict[str, str]:
    """`ov_config` properties: a throughput hint for the virtual devices that spread requests over
    several devices (LocalAI's CUMULATIVE_THROUGHPUT), latency otherwise, and `threads` for the CPU.

    One thread on the CPU also pins f32 inference precision: OpenVINO's CPU plugin (2026.4) dies with
    SIGFPE compiling a model for INFERENCE_NUM_THREADS=1 at bf16, which is its default precision on AMX
    CPUs (Sapphire Rapids and later); two or more threads, or f32, compile. f32 is already the default
    on CPUs without bf16, so the rule changes nothing there.
    """
    kind = device.split(":", 1)[0].split(".", 1)[0]
    config = {"PERFORMANCE_HINT": "CUMULATIVE_THROUGHPUT" if kind in ("AUTO", "MULTI") else "LATENCY"}
    if not threads:
        return config
    cpu = {"INFERENCE_NUM_THREADS": str(threads)}
    if threads == 1:
        cpu["INFERENCE_PRECISION_HINT"] = "f32"
    if kind == "CPU":
        config.update(cpu)
    elif kind in ("AUTO", "MULTI", "HETERO") and "-CPU" not in device:
        properties = ",".join(f"{key}:{value}" for key, value in cpu.items())
        config["DEVICE_PROPERTIES"] = f"{{CPU:{{{properties}}}}}"
    return config


# -- requests ---------------------------------------------------------------------------------------


def context_size(config: ModelConfig, trained: int | None) -> int:
    """`context_size` when set (-1 or unset: the model's trained context, else DEFAULT_CONTEXT)."""
    if config.context_size and config.context_size > 0:
        return config.context_size
    return trained if trained and trained > 0 else DEFAULT_CONTEXT


def check_prompt(prompt_tokens: int, context: int) -> None:
    if prompt_tokens == 0:
        raise InvalidRequest("the prompt is empty", param="prompt")
    if prompt_tokens >= context:
        raise InvalidRequest(
            f"This model's maximum context length is {context} tokens, but the prompt has "
            f"{prompt_tokens} tokens (at least one token must be left to generate).",
            param="prompt",
            code="context_length_exceeded",
        )


def new_tokens(params: SamplingParams, prompt_tokens: int, context: int) -> int:
    """Tokens to generate at most: `max_tokens`, bounded by what is left of the context."""
    room = context - prompt_tokens
    return min(params.max_tokens, room) if params.max_tokens else room


def stop_words(config: ModelConfig, params: SamplingParams) -> list[str]:
    """The model's `stopwords` plus the request's `stop`, without duplicates or empty strings."""
    words: list[str] = []
    for word in [*(config.stopwords or []), *params.stop]:
        if word and word not in words:
            words.append(word)
    return words


def random_seed(seed: int | None) -> bool:
    return seed is None or seed < 0


def generate_kwargs(params: SamplingParams, max_new_tokens: int) -> dict[str, Any]:
    """Hugging Face `generate()` keyword arguments for a request (penalties that transformers has no
    knob for — presence and frequency — are a logits processor, see hf_generate)."""
    if params.grammar:
        raise InvalidRequest("grammars are served by the llama backend only", param="grammar")
    if params.json_schema:
        raise InvalidRequest("JSON-constrained output is served by the llama and vllm backends only")
    kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens}
    if params.temperature <= 0:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
        if params.min_p > 0:
            kwargs["min_p"] = params.min_p
        if 0 < params.typical_p < 1:
            kwargs["typical_p"] = params.typical_p
    if params.repeat_penalty > 0 and params.repeat_penalty != 1:
        kwargs["repetition_penalty"] = params.repeat_penalty
    if params.logit_bias:
        kwargs["sequence_bias"] = [[[token], bias] for token, bias in params.logit_bias.items()]
    if params.ignore_eos:
        kwargs["min_new_tokens"] = max_new_tokens
    return kwargs


# -- streaming --------------------------------------------------------------------------------------


class IncrementalDecoder:
    """Turns a growing list of token ids into text deltas without splitting UTF-8 characters.

    Decodes a small window (the previous delta's tokens plus the new ones) and emits what the new
    tokens add, holding back while the text ends in U+FFFD (a character still incomplete), so that
    tokenizers that drop or add leading spaces per call (SentencePiece) still join up right.
    """

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._prefix = 0
        self._read = 0

    def push(self, ids: Sequence[int]) -> str:
        self._ids.extend(ids)
        before = self._decode(self._ids[self._prefix : self._read])
        now = self._decode(self._ids[self._prefix :])
        if len(now) <= len(before) or now.endswith("\ufffd"):
            return ""
        self._prefix, self._read = self._read, len(self._ids)
        return now[len(before) :]

    @property
    def tokens(self) -> int:
        return len(self._ids)
