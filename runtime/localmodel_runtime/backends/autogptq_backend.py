"""Backend `autogptq`: a GPTQ repository loaded with GPTQModel and generated with transformers.

LocalAI serves this backend with AutoGPTQ, whose last release (0.7.1, the project is archived) does not
import under transformers 5. GPTQModel is its maintained successor: it reads the same checkpoints
(`quantize_config.json` plus safetensors weights) and runs them on CUDA and, with its torch kernels, on
the CPU.

`parameters.model` is the GPTQ repository (a directory in the models directory, or a Hugging Face id);
`model_base_name` (or the legacy `autogptq.model_base_name`) names its weights file without the
extension. `autogptq.device`, `autogptq.triton` and `autogptq.use_fast_tokenizer` from the legacy block
are honoured; `main_gpu` (`cuda.N`, `cpu`) picks the device otherwise. The loaded model is a
transformers model, so generation streams through the same worker-thread bridge as the transformers
backend.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
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
from .hf.devices import torch_device
from .hf.generate import HFGenerator
from .hf.model_location import model_location
from .hf.requests import context_size, stop_words
from .registry import unavailable

log = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
"""A weights file GPTQModel always looks for (the other is `gptq_model-{bits}bit-{group}g`)."""


def base_name(config: ModelConfig) -> str | None:
    legacy = config.autogptq
    return config.model_base_name or (legacy.model_base_name if legacy else None)


def load_kwargs(config: ModelConfig, device: str) -> dict[str, Any]:
    """`GPTQModel.load()` keyword arguments from LocalAI's keys (`backend` is GPTQModel's kernel choice)."""
    legacy = config.autogptq
    return {
        "device": (legacy.device if legacy and legacy.device else None) or device,
        "trust_remote_code": bool(config.trust_remote_code),
        "backend": "gptq_triton" if legacy and legacy.triton else "auto",
    }


def checkpoint_view(repository: Path, weights_base_name: str | None, scratch: Path) -> Path:
    """The directory to hand GPTQModel for `repository` with weights `{weights_base_name}.safetensors`.

    GPTQModel finds weights only under its own names, while LocalAI's `model_base_name` names any file
    (TheBloke's repositories use names such as `model-4bit-128g`). For such a name this returns a
    directory under `scratch` of links to the repository's files in which `model.safetensors` is the
    named file; otherwise the repository itself.
    """
    if not weights_base_name or weights_base_name == WEIGHTS_NAME.removesuffix(".safetensors"):
        return repository
    weights = repository / f"{weights_base_name}.safetensors"
    if not weights.is_file():
        found = sorted(p.name for p in repository.glob("*.safetensors")) or ["none"]
        hint = (
            " (GPTQ weights must be safetensors)"
            if (repository / f"{weights_base_name}.bin").exists()
            else ""
        )
        raise ModelLoadError(
            f"model_base_name {weights_base_name!r}: {weights.name} is not in {repository}{hint}; "
            f"safetensors there: {', '.join(found)}"
        )
    view = scratch / repository.name
    view.mkdir(parents=True, exist_ok=True)
    for item in repository.iterdir():
        if item.suffix == ".safetensors" or item.name.endswith(".safetensors.index.json"):
            continue  # the named file alone is the model's weights
        (view / item.name).symlink_to(item.resolve())
    (view / WEIGHTS_NAME).symlink_to(weights.resolve())
    return view


class AutoGPTQBackend(Backend):
    name = "autogptq"

    def __init__(self, config: ModelConfig, models_dir: Path) -> None:
        super().__init__(config, models_dir)
        self._generator: HFGenerator | None = None
        self._context = 0
        self._info = ModelInfo()
        self._scratch: Path | None = None

    async def load(self) -> None:
        try:
            import gptqmodel
            import torch
            import transformers
        except ImportError:
            raise unavailable("autogptq") from None
        location = model_location(self.config, self.models_dir)
        await asyncio.to_thread(self._load_sync, gptqmodel, torch, transformers, location)

    def _repository(self, location: str) -> Path:
        """A local directory for `location`: a Hugging Face id is downloaded first when a base name must be
        linked (GPTQModel would otherwise search the Hub under its own names only)."""
        if Path(location).is_dir():
            return Path(location)
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(location))
        except Exception as exc:  # the Hub's errors have no common base below Exception
            raise ModelLoadError(f"could not download {location}: {exc}") from exc

    def _load_sync(self, gptqmodel: Any, torch: Any, tf: Any, location: str) -> None:
        cfg = self.config
        cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
        device = torch_device(cfg.main_gpu, cuda_devices=cuda_devices)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        kwargs = load_kwargs(cfg, device)
        legacy = cfg.autogptq
        use_fast = True if legacy is None or legacy.use_fast_tokenizer is None else legacy.use_fast_tokenizer
        name = base_name(cfg)
        source = location
        try:
            if name:
                self._scratch = Path(tempfile.mkdtemp(prefix="localmodel-gptq-"))
                source = str(checkpoint_view(self._repository(location), name, self._scratch))
            quantized = gptqmodel.GPTQModel.load(source, **kwargs)
            tokenizer = tf.AutoTokenizer.from_pretrained(
                source, use_fast=use_fast, trust_remote_code=bool(cfg.trust_remote_code)
            )
        except (OSError, ValueError, RuntimeError, TypeError) as exc:
            self._remove_scratch()
            raise ModelLoadError(f"GPTQModel could not load {location}: {exc}") from exc
        except BaseException:
            self._remove_scratch()
            raise
        model = quantized.model  # the transformers model with GPTQ linear layers
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

    def _remove_scratch(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    async def close(self) -> None:
        self._generator = None
        self._remove_scratch()
