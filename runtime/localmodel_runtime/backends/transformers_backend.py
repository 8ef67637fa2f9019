"""Backend `transformers` (aliases `sentencetransformers`, `huggingface-embeddings`): Hugging Face models.

`type` picks the model class, as in LocalAI: `AutoModelForCausalLM` (generation, and embeddings from
the last hidden state with `embeddings: true`), `OVModelForCausalLM` / `OVModelForFeatureExtraction`
(OpenVINO IR through optimum-intel; a plain checkpoint is exported at load), `SentenceTransformer`
(what the two aliases set) and none (`AutoModel`). `main_gpu` selects the torch device (`cuda`,
`cuda.N`) or the OpenVINO device (AUTO, CPU, GPU, NPU, MULTI, HETERO, `AUTO:-CPU`); `f16` asks for
bfloat16 on CUDA; `quantization` is bitsandbytes (`bnb_4bit`, `bnb_8bit`, `xpu_4bit`, `xpu_8bit`);
`trust_remote_code` stays off unless set. torch, transformers, optimum and sentence-transformers are
imported only in `load()`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..config import ModelConfig
from ..config.backends import BACKEND_TYPE_ALIASES
from .base import (
    Backend,
    BackendError,
    Capabilities,
    GenerationEvent,
    InvalidRequest,
    ModelInfo,
    ModelLoadError,
    SamplingParams,
    UnsupportedOperation,
)
from .hf.devices import bnb_settings, openvino_config, openvino_device, torch_device, torch_dtype
from .hf.generate import HFGenerator
from .hf.model_location import model_location
from .hf.requests import context_size, stop_words
from .registry import unavailable

log = logging.getLogger(__name__)

CAUSAL, OV_CAUSAL, OV_FEATURES, SENTENCE, AUTO = (
    "AutoModelForCausalLM",
    "OVModelForCausalLM",
    "OVModelForFeatureExtraction",
    "SentenceTransformer",
    "AutoModel",
)
MODEL_TYPES = (CAUSAL, OV_CAUSAL, OV_FEATURES, SENTENCE, AUTO)


def model_type(config: ModelConfig) -> str:
    """The model class: the alias's type (LocalAI overwrites `type` for it), else `type`, else AutoModel."""
    alias = BACKEND_TYPE_ALIASES.get((config.backend or "").lower())
    if alias:
        return alias
    if not config.type:
        return AUTO
    for known in MODEL_TYPES:
        if config.type.lower() == known.lower():
            return known
    raise ModelLoadError(
        f"type {config.type!r} is not one the transformers backend loads: {', '.join(MODEL_TYPES)}"
    )


def pretrained_kwargs(config: ModelConfig, device: str, dtype: str, quantization: Any) -> dict[str, Any]:
    """`from_pretrained()` keyword arguments of a torch model (dtype as its name; see `_torch_kwargs`)."""
    kwargs: dict[str, Any] = {
        "trust_remote_code": bool(config.trust_remote_code),
        "use_safetensors": True,
        "dtype": dtype,
    }
    if device != "cpu":
        kwargs["device_map"] = device
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    return kwargs


class TransformersBackend(Backend):
    name = "transformers"

    def __init__(self, config: ModelConfig, models_dir: Path) -> None:
        super().__init__(config, models_dir)
        self.kind = model_type(config)
        self.device: str | None = None
        self.ov_config: dict[str, str] | None = None
        self._torch: Any = None
        self._model: Any = None
        self._tokenizer: Any = None
        self._generator: HFGenerator | None = None
        self._context = 0
        self._reranker = False
        self._info = ModelInfo()

    # -- loading ---------------------------------------------------------------------------------

    async def load(self) -> None:
        try:
            import torch
            import transformers
        except ImportError:
            raise unavailable("transformers") from None
        self._torch = torch
        location = model_location(self.config, self.models_dir)
        await asyncio.to_thread(self._load_sync, torch, transformers, location)

    def _load_sync(self, torch: Any, tf: Any, location: str) -> None:
        cfg = self.config
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        try:
            if cfg.reranking:
                self._load_cross_encoder(torch, location)
            elif self.kind in (OV_CAUSAL, OV_FEATURES):
                self._load_openvino(location)
            elif self.kind == SENTENCE:
                self._load_sentence(torch, location)
            else:
                self._load_torch(torch, tf, location)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"transformers could not load {location}: {exc}") from exc
        trained = getattr(getattr(self._model, "config", None), "max_position_embeddings", None)
        if self.kind == SENTENCE:
            trained = getattr(self._model, "max_seq_length", None)
        if self._reranker:
            trained = getattr(self._model, "max_length", None) or trained
        self._context = context_size(cfg, trained if isinstance(trained, int) else None)
        tok = self._tokenizer
        template = getattr(tok, "chat_template", None)
        self._info = ModelInfo(
            chat_template=template if isinstance(template, str) else None,
            bos_token=str(getattr(tok, "bos_token", None) or ""),
            eos_token=str(getattr(tok, "eos_token", None) or ""),
        )
        if self.capabilities().completion:
            self._generator = HFGenerator(
                torch=torch,
                transformers=tf,
                model=self._model,
                tokenizer=tok,
                device=None if self.kind == OV_CAUSAL else self.device,
                context=self._context,
                stop_words=lambda params: stop_words(cfg, params),
            )
        elif not self.capabilities().embeddings and not self._reranker:
            log.warning(
                "%s loaded with AutoModel, which cannot generate: set `type: AutoModelForCausalLM` for "
                "text generation or `embeddings: true` for embeddings",
                location,
            )
        log.info("loaded %s as %s on %s, context %d", location, self.kind, self.device, self._context)

    def _load_torch(self, torch: Any, tf: Any, location: str) -> None:
        cfg = self.config
        xpu = bool(getattr(torch, "xpu", None) and torch.xpu.is_available())
        cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
        device = torch_device(cfg.main_gpu, cuda_devices=cuda_devices, xpu_available=xpu)
        bf16 = device.startswith("cuda") and bool(torch.cuda.is_bf16_supported())
        dtype = torch_dtype(device, f16=cfg.f16, dtype=cfg.dtype, bf16_supported=bf16)
        settings = bnb_settings(cfg.quantization, device, dtype)
        quantization = None
        if settings is not None:
            if importlib.util.find_spec("bitsandbytes") is None:
                raise unavailable("transformers", "bnb", f"quantization {cfg.quantization}")
            if "bnb_4bit_compute_dtype" in settings:
                settings = {**settings, "bnb_4bit_compute_dtype": getattr(torch, dtype)}
            quantization = tf.BitsAndBytesConfig(**settings)
        kwargs = pretrained_kwargs(cfg, device, dtype, quantization)
        kwargs["dtype"] = getattr(torch, dtype)
        cls = tf.AutoModelForCausalLM if self.kind == CAUSAL else tf.AutoModel
        self.device = device
        self._model = cls.from_pretrained(location, **kwargs)
        self._model.eval()
        self._tokenizer = tf.AutoTokenizer.from_pretrained(
            location, trust_remote_code=bool(cfg.trust_remote_code)
        )

    def _load_openvino(self, location: str) -> None:
        cfg = self.config
        try:
            import openvino
            import optimum.intel
        except ImportError:
            raise unavailable("transformers", "openvino", f"type {self.kind}") from None
        import transformers as tf

        device = openvino_device(cfg.main_gpu, openvino.Core().available_devices)
        self.device = device
        self.ov_config = openvino_config(device, cfg.threads)
        cls = (
            optimum.intel.OVModelForCausalLM
            if self.kind == OV_CAUSAL
            else optimum.intel.OVModelForFeatureExtraction
        )
        path = Path(location)
        # An exported IR directory has openvino_model.xml; anything else is exported at load.
        export = not (path.is_dir() and any(path.glob("openvino*model*.xml")))
        self._model = cls.from_pretrained(
            location,
            export=export,
            compile=True,
            device=device,
            ov_config=self.ov_config,
            trust_remote_code=bool(cfg.trust_remote_code),
        )
        self._tokenizer = tf.AutoTokenizer.from_pretrained(
            location, trust_remote_code=bool(cfg.trust_remote_code)
        )

    def _load_sentence(self, torch: Any, location: str) -> None:
        cfg = self.config
        try:
            import sentence_transformers
        except ImportError:
            raise unavailable("transformers") from None
        cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
        device = torch_device(cfg.main_gpu, cuda_devices=cuda_devices)
        self.device = device
        self._model = sentence_transformers.SentenceTransformer(
            location, device=device, trust_remote_code=bool(cfg.trust_remote_code)
        )
        self._tokenizer = self._model.tokenizer

    def _load_cross_encoder(self, torch: Any, location: str) -> None:
        """`reranking: true`: the model is a sentence-transformers CrossEncoder (a sequence classifier
        that scores a query and a document together)."""
        cfg = self.config
        try:
            import sentence_transformers
        except ImportError:
            raise unavailable("transformers") from None
        cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
        self.device = torch_device(cfg.main_gpu, cuda_devices=cuda_devices)
        self._model = sentence_transformers.CrossEncoder(
            location, device=self.device, trust_remote_code=bool(cfg.trust_remote_code)
        )
        self._tokenizer = self._model.tokenizer
        self._reranker = True

    # -- serving ---------------------------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        if self._reranker:
            return Capabilities(completion=False, rerank=True, context_size=self._context)
        can_generate = self.kind in (CAUSAL, OV_CAUSAL) or (
            self.kind == AUTO and self._model is not None and bool(self._model.can_generate())
        )
        embeddings = (
            self.kind in (OV_FEATURES, SENTENCE)
            or bool(self.config.embeddings)
            or (self.kind == AUTO and not can_generate)
        )
        return Capabilities(
            completion=can_generate,
            embeddings=embeddings,
            tokenize=True,
            max_concurrency=1,
            context_size=self._context,
        )

    def model_info(self) -> ModelInfo:
        return self._info

    def tokenize(self, text: str) -> list[int]:
        if self._generator is not None:
            return self._generator.tokenize(text)
        if self._tokenizer is None:
            raise BackendError("the model is not loaded")
        return list(self._tokenizer(text)["input_ids"])

    def generate(self, prompt: str, params: SamplingParams) -> AsyncIterator[GenerationEvent]:
        if self._generator is None:
            if self._model is None:
                raise BackendError("the model is not loaded")
            raise UnsupportedOperation(f"this model ({self.kind}) does not generate text")
        return self._generator.generate(prompt, params)

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if self._model is None:
            raise BackendError("the model is not loaded")
        if not self.capabilities().embeddings:
            raise UnsupportedOperation(
                "this model is not loaded for embeddings: set `embeddings: true` in its configuration"
            )
        for text in texts:
            n = len(self.tokenize(text))
            if n > self._context:
                raise InvalidRequest(
                    f"an input has {n} tokens; this model embeds at most {self._context}",
                    param="input",
                    code="context_length_exceeded",
                )
        return await asyncio.to_thread(self._embed_sync, texts)

    def _embed_sync(self, texts: list[str]) -> list[list[float]]:
        if self.kind == SENTENCE:
            vectors = self._model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
            return [[float(v) for v in row] for row in vectors.tolist()]
        torch = self._torch
        out: list[list[float]] = []
        with torch.inference_mode():
            for text in texts:  # one at a time: no padding, so every model pools the same way
                encoded = self._tokenizer([text], return_tensors="pt")
                if self.kind not in (OV_FEATURES, OV_CAUSAL) and self.device:
                    encoded = encoded.to(self.device)
                if self.kind == CAUSAL:
                    hidden = self._model(**encoded, output_hidden_states=True).hidden_states[-1]
                else:
                    hidden = self._model(**encoded).last_hidden_state
                mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
                values = [float(v) for v in pooled[0].float().tolist()]
                norm = math.sqrt(sum(v * v for v in values)) or 1.0
                out.append([v / norm for v in values])
        return out

    async def rerank(self, query: str, documents: list[str]) -> tuple[list[float], int]:
        if self._model is None:
            raise BackendError("the model is not loaded")
        if not self._reranker:
            raise UnsupportedOperation(
                "this model is not loaded for reranking: set `reranking: true` on a cross-encoder"
            )
        pairs = [(query, document) for document in documents]

        def score() -> tuple[list[float], int]:
            # The cross-encoder reads at most its max_length tokens of a pair (it truncates, as LocalAI's).
            values = self._model.predict(pairs, convert_to_numpy=True, show_progress_bar=False)
            tokens = sum(len(self._tokenizer(q, d)["input_ids"]) for q, d in pairs)
            return [float(v) for v in values.reshape(len(pairs), -1)[:, 0]], tokens

        return await asyncio.to_thread(score)

    async def close(self) -> None:
        self._generator = None
        self._model = None
        self._tokenizer = None
