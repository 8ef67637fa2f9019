"""The llama backend's mapping of LocalAI keys onto llama.cpp's model and context parameters (pure
functions of the config and llama-cpp-python's module, so `load()` reads as the steps it takes)."""

from __future__ import annotations

import ctypes
import logging
import os
from typing import Any

from ...config import ModelConfig
from ..base import ModelLoadError

log = logging.getLogger(__name__)

DEFAULT_CONTEXT = 4096
DEFAULT_PARALLEL = 4
DEFAULT_BATCH = 512

_CACHE_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "bf16": 30}
_FLASH_ATTENTION = {"auto": -1, "on": 1, "enabled": 1, "true": 1, "1": 1, "off": 0, "disabled": 0, "false": 0}
_ROPE_SCALING = {"none": 0, "linear": 1, "yarn": 2}


def usable_cpus() -> int:
    """CPUs this process may run on (a pod's cpuset), which os.cpu_count() does not see."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parallel_sequences(config: ModelConfig) -> int:
    options = config.option_values
    value = options.get("parallel") or options.get("n_parallel")
    if value is None:
        return DEFAULT_PARALLEL
    try:
        parallel = int(value)
    except ValueError:
        raise ModelLoadError(f"options: parallel must be an integer, got {value!r}") from None
    if parallel < 1:
        raise ModelLoadError("options: parallel must be at least 1")
    return parallel


def extra_buffers(lib: Any, config: ModelConfig) -> bool:
    """Whether llama.cpp may use its extra CPU weight layouts (AMX tiles, repacked quants).

    ggml's AMX int8 kernels crashed (SIGSEGV in ggml_backend_amx_mul_mat) on Gemma 3 Q4_K_M on the
    AMX machines we test on, so a build that compiled them (a native build on an AMX CPU) defaults to
    off. The portable build `make setup` and the images use compiles none, so it keeps repacking on
    every CPU. `options: ["extra_buffers:true"]` turns them back on, `extra_buffers:false` turns them
    off everywhere.
    """
    value = config.option_values.get("extra_buffers")
    if value is not None:
        return value.lower() in ("1", "true", "on", "yes")
    info = lib.llama_print_system_info().decode(errors="replace")
    return "AMX_INT8 = 1" not in info


def context_length(cfg: ModelConfig, trained: int) -> int:
    """Tokens per sequence: `context_size` (-1: the trained context), else 4096 or less if trained so."""
    if cfg.context_size == -1:
        return trained
    if cfg.context_size:
        return cfg.context_size
    return min(DEFAULT_CONTEXT, trained) if trained > 0 else DEFAULT_CONTEXT


def batch_size(cfg: ModelConfig) -> int:
    return (cfg.parameters.batch if cfg.parameters and cfg.parameters.batch else None) or DEFAULT_BATCH


def model_params(lib: Any, cfg: ModelConfig, keepalive: list[Any]) -> Any:
    """llama.cpp's model parameters for `cfg`: offload, devices, memory mapping, weight layouts.
    Arrays llama.cpp points into are appended to `keepalive` (they must outlive the model)."""
    mparams = lib.llama_model_default_params()
    gpu_layers = cfg.gpu_layers
    if gpu_layers is None:
        # LocalAI offloads every layer by default; a CPU build of llama.cpp ignores it anyway.
        gpu_layers = -1 if lib.llama_supports_gpu_offload() else 0
    mparams.n_gpu_layers = 0x7FFFFFFF if gpu_layers < 0 else gpu_layers
    if cfg.main_gpu:
        if cfg.main_gpu.isdigit():
            mparams.main_gpu = int(cfg.main_gpu)
        else:
            log.warning("main_gpu %r is not a device index; llama.cpp uses device 0", cfg.main_gpu)
    if cfg.tensor_split:
        try:
            shares = [float(x) for x in cfg.tensor_split.split(",") if x.strip()]
        except ValueError:
            raise ModelLoadError(f"tensor_split {cfg.tensor_split!r} is not a list of numbers") from None
        if len(shares) > lib.LLAMA_MAX_DEVICES:
            raise ModelLoadError(f"tensor_split names more than {lib.LLAMA_MAX_DEVICES} devices")
        split = (ctypes.c_float * lib.LLAMA_MAX_DEVICES)(*shares)
        keepalive.append(split)
        mparams.tensor_split = split
    use_mmap = cfg.mmap is not False
    use_mlock = bool(cfg.mmlock)
    mparams.load_mode = (
        lib.LLAMA_LOAD_MODE_MMAP_MLOCK
        if use_mmap and use_mlock
        else lib.LLAMA_LOAD_MODE_MLOCK
        if use_mlock
        else lib.LLAMA_LOAD_MODE_MMAP
        if use_mmap
        else lib.LLAMA_LOAD_MODE_NONE
    )
    mparams.use_extra_bufts = extra_buffers(lib, cfg)
    if cfg.low_vram:
        log.info("low_vram has no effect: llama.cpp dropped the option; use gpu_layers instead")
    return mparams


def context_params(lib: Any, cfg: ModelConfig, n_ctx: int, n_batch: int) -> Any:
    """llama.cpp's context parameters for `cfg`: size, batch, threads, RoPE/YaRN, attention, KV cache."""
    cparams = lib.llama_context_default_params()
    cparams.n_ctx = n_ctx
    cparams.n_batch = n_batch
    cparams.n_ubatch = min(n_batch, DEFAULT_BATCH)
    threads = cfg.threads or usable_cpus()
    cparams.n_threads = threads
    cparams.n_threads_batch = threads
    if cfg.rope_scaling:
        cparams.rope_scaling_type = _ROPE_SCALING[cfg.rope_scaling]
    params = cfg.parameters
    if params and params.rope_freq_base:
        cparams.rope_freq_base = params.rope_freq_base
    if params and params.rope_freq_scale:
        cparams.rope_freq_scale = params.rope_freq_scale
    # YaRN: 0 (LocalAI's "unset") keeps llama.cpp's default, which reads the model's metadata.
    if cfg.yarn_ext_factor:
        cparams.yarn_ext_factor = cfg.yarn_ext_factor
    if cfg.yarn_attn_factor:
        cparams.yarn_attn_factor = cfg.yarn_attn_factor
    if cfg.yarn_beta_fast:
        cparams.yarn_beta_fast = cfg.yarn_beta_fast
    if cfg.yarn_beta_slow:
        cparams.yarn_beta_slow = cfg.yarn_beta_slow
    if cfg.flash_attention:
        value = _FLASH_ATTENTION.get(cfg.flash_attention.lower())
        if value is None:
            raise ModelLoadError(f"flash_attention must be one of {sorted(_FLASH_ATTENTION)}")
        cparams.flash_attn_type = value
    if cfg.f16:
        # LocalAI's f16 is "f16 memory": an f16 KV cache (llama.cpp's default, made explicit).
        cparams.type_k = cparams.type_v = _CACHE_TYPES["f16"]
    for key, attr in (("cache_type_k", "type_k"), ("cache_type_v", "type_v")):
        value = getattr(cfg, key)
        if value:
            if value.lower() not in _CACHE_TYPES:
                raise ModelLoadError(f"{key} must be one of {sorted(_CACHE_TYPES)}, got {value!r}")
            setattr(cparams, attr, _CACHE_TYPES[value.lower()])
    return cparams
