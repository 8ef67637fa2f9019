"""Where a Python-library backend runs: the torch device and dtype `main_gpu` / `f16` / `dtype` select,
the bitsandbytes settings of `quantization`, and the OpenVINO device and properties."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..base import ModelLoadError

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
