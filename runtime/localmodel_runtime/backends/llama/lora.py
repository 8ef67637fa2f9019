"""LoRA adapters for the llama backend: `lora_adapter` (with `lora_scale`) and `lora_adapters` (with
`lora_scales`), loaded through llama.cpp's adapter API and applied to every context of the model.

LocalAI's `lora_scale: 0` means "unset" (full strength), so the single adapter gets 1.0 then; a value in
`lora_scales` is taken as written (0 switches that adapter off), and a missing one is 1.0. `lora_base` is
ignored: llama.cpp applies adapters to the loaded model itself.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...config import ModelConfig
from ..base import ModelLoadError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdapterSpec:
    """One adapter file (relative to the models directory) and the scale it is applied with."""

    file: str
    scale: float
    key: str
    """The configuration key that names it, for messages: `lora_adapter` or `lora_adapters[i]`."""


def adapter_specs(config: ModelConfig) -> list[AdapterSpec]:
    """The adapters `config` asks for, in order: `lora_adapter` first, then `lora_adapters`."""
    specs: list[AdapterSpec] = []
    if config.lora_adapter:
        specs.append(AdapterSpec(config.lora_adapter, config.lora_scale or 1.0, "lora_adapter"))
    adapters = config.lora_adapters or []
    scales = config.lora_scales or []
    if len(scales) > len(adapters):
        raise ModelLoadError(
            f"lora_scales has {len(scales)} values but lora_adapters names {len(adapters)} adapters"
        )
    for i, file in enumerate(adapters):
        scale = scales[i] if i < len(scales) else 1.0
        specs.append(AdapterSpec(file, scale, f"lora_adapters[{i}]"))
    return specs


@dataclass
class LoraAdapters:
    """The loaded adapters of one model; `apply()` sets them on a context, `free()` releases them."""

    lib: Any
    specs: list[AdapterSpec] = field(default_factory=list)
    handles: list[Any] = field(default_factory=list)

    @classmethod
    def load(cls, lib: Any, model: Any, config: ModelConfig, models_dir: Path) -> LoraAdapters:
        if config.lora_base:
            log.info("lora_base is ignored: llama.cpp applies the adapters to the loaded model")
        adapters = cls(lib, adapter_specs(config))
        try:
            for spec in adapters.specs:
                path = models_dir / spec.file
                if not path.is_file():
                    raise ModelLoadError(f"{spec.key}: the LoRA adapter {path} does not exist")
                handle = lib.llama_adapter_lora_init(model, str(path).encode())
                if not handle:
                    raise ModelLoadError(
                        f"{spec.key}: llama.cpp could not load the LoRA adapter {path} (not a GGUF LoRA "
                        "adapter, or made for another architecture or model size; `debug: true` shows why)"
                    )
                adapters.handles.append(handle)
        except BaseException:
            adapters.free()
            raise
        return adapters

    def __bool__(self) -> bool:
        return bool(self.handles)

    def apply(self, ctx: Any) -> None:
        """Set every adapter, with its scale, on `ctx` (a no-op without adapters)."""
        if not self.handles:
            return
        lib, n = self.lib, len(self.handles)
        handles = (lib.llama_adapter_lora_p_ctypes * n)(*self.handles)
        scales = (ctypes.c_float * n)(*(spec.scale for spec in self.specs))
        if lib.llama_set_adapters_lora(ctx, handles, n, scales):
            names = ", ".join(spec.file for spec in self.specs)
            raise ModelLoadError(f"llama.cpp could not apply the LoRA adapters {names}")

    def free(self) -> None:
        for handle in self.handles:
            self.lib.llama_adapter_lora_free(handle)
        self.handles.clear()
