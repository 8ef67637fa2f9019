"""Backend `autogptq`: a GPTQ repository through AutoGPTQ's `from_quantized`, generated with transformers.

`parameters.model` is the GPTQ repository (a directory in the models directory, or a Hugging Face id);
`model_base_name` (or the legacy `autogptq.model_base_name`) names its weights file without the
extension. `autogptq.device`, `autogptq.triton` and `autogptq.use_fast_tokenizer` from the legacy block
are honoured; `main_gpu` (`cuda.N`) picks the device otherwise. AutoGPTQ wraps a transformers model,
so generation streams through the same worker-thread bridge as the transformers backend.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..config import ModelConfig
from .base import (
    Backend,
    BackendError,
    Capabilities,
    GenerationEvent,
    ModelInfo,
    ModelLoadError,
    SamplingParams,
)
from .hf_common import context_size, model_location, stop_words, torch_device, unavailable
from .hf_generate import HFGenerator

log = logging.getLogger(__name__)


def quantized_kwargs(config: ModelConfig, device: str) -> dict[str, Any]:
    """`AutoGPTQForCausalLM.from_quantized()` keyword arguments (LocalAI's, key for key)."""
    legacy = config.autogptq
    base_name = config.model_base_name or (legacy.model_base_name if legacy else None)
    kwargs: dict[str, Any] = {
        "use_safetensors": True,
        "trust_remote_code": bool(config.trust_remote_code),
        "device": (legacy.device if legacy and legacy.device else None) or device,
        "use_triton": bool(legacy and legacy.triton),
        "quantize_config": None,
    }
    if base_name:
        kwargs["model_basename"] = base_name
    return kwargs


class AutoGPTQBackend(Backend):
    name = "autogptq"

    def __init__(self, config: ModelConfig, models_dir: Path) -> None:
        super().__init__(config, models_dir)
        self._generator: HFGenerator | None = None
        self._context = 0
        self._info = ModelInfo()

    async def load(self) -> None:
        try:
            import auto_gptq
            import torch
            import transformers
        except ImportError:
            raise unavailable("autogptq") from None
        location = model_location(self.config, self.models_dir)
        await asyncio.to_thread(self._load_sync, auto_gptq, torch, transformers, location)

    def _load_sync(self, auto_gptq: Any, torch: Any, tf: Any, location: str) -> None:
        cfg = self.config
        cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
        device = torch_device(cfg.main_gpu, cuda_devices=cuda_devices)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        kwargs = quantized_kwargs(cfg, device)
        legacy = cfg.autogptq
        use_fast = True if legacy is None or legacy.use_fast_tokenizer is None else legacy.use_fast_tokenizer
        try:
            model = auto_gptq.AutoGPTQForCausalLM.from_quantized(location, **kwargs)
            tokenizer = tf.AutoTokenizer.from_pretrained(
                location, use_fast=use_fast, trust_remote_code=bool(cfg.trust_remote_code)
            )
        except (OSError, ValueError, RuntimeError, FileNotFoundError) as exc:
            raise ModelLoadError(f"AutoGPTQ could not load {location}: {exc}") from exc
        trained = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        self._context = context_size(cfg, trained if isinstance(trained, int) else None)
        template = getattr(tokenizer, "chat_template", None)
        self._info = ModelInfo(
            chat_template=template if isinstance(template, str) else None,
            bos_token=str(getattr(tokenizer, "bos_token", None) or ""),
            eos_token=str(getattr(tokenizer, "eos_token", None) or ""),
        )
        self._generator = HFGenerator(
            torch=torch,
            transformers=tf,
            model=model,
            tokenizer=tokenizer,
            device=kwargs["device"],
            context=self._context,
            stop_words=lambda params: stop_words(cfg, params),
        )
        log.info("loaded GPTQ model %s on %s, context %d", location, kwargs["device"], self._context)

    def capabilities(self) -> Capabilities:
        return Capabilities(completion=True, embeddings=False, max_concurrency=1, context_size=self._context)

    def model_info(self) -> ModelInfo:
        return self._info

    def _require(self) -> HFGenerator:
        if self._generator is None:
            raise BackendError("the model is not loaded")
        return self._generator

    def tokenize(self, text: str) -> list[int]:
        return self._require().tokenize(text)

    def generate(self, prompt: str, params: SamplingParams) -> AsyncIterator[GenerationEvent]:
        return self._require().generate(prompt, params)

    async def close(self) -> None:
        self._generator = None
