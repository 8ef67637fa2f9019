"""Backend `rwkv`: RWKV weights through the `rwkv` package, with the model's `.tokenizer.json`.

As in LocalAI, the model file comes with a tokenizer beside it: `parameters.model: rwkv_small` reads
`rwkv_small.pth` (the `rwkv` package's PyTorch weights) and `rwkv_small.tokenizer.json` (a Hugging Face
`tokenizers` file). `main_gpu` / `f16` / `dtype` choose the strategy (`cpu fp32`, `cuda:N fp16`, …) and
`options: [strategy:…]` sets one verbatim; `threads` sets torch's CPU threads. RWKV is a recurrent
network, so a sequence's state is one vector: requests run one at a time and sample here in Python.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..config import ModelConfig
from ..stops import StopMatcher
from .base import (
    Backend,
    BackendError,
    Capabilities,
    Finished,
    GenerationEvent,
    ModelInfo,
    ModelLoadError,
    SamplingParams,
    TextPiece,
)
from .hf.decoder import IncrementalDecoder
from .hf.devices import torch_device
from .hf.generate import ThreadStream, run_in_thread
from .hf.requests import check_prompt, context_size, new_tokens, random_seed, stop_words
from .registry import unavailable

log = logging.getLogger(__name__)

RNN_CONTEXT = 4096
"""RWKV has no context window; this bounds prompt plus output when `context_size` is not set."""
EOS_NAMES = ("<|endoftext|>", "</s>", "<s>")


def model_files(config: ModelConfig, models_dir: Path) -> tuple[Path, Path]:
    """(weights `.pth`, tokenizer `.tokenizer.json`) for `parameters.model`, which may omit `.pth`."""
    model = config.model_file
    if not model:
        raise ModelLoadError(
            "parameters.model is not set: name the RWKV weights file in the models directory"
        )
    stem = model[:-4] if model.endswith(".pth") else model
    weights = models_dir / f"{stem}.pth"
    if not weights.is_file():
        plain = models_dir / model
        if plain.is_file():
            with plain.open("rb") as f:
                magic = f.read(4)
            if magic in (b"ggml", b"lmgg", b"ggmf", b"fmgg"):
                raise ModelLoadError(
                    f"{plain} is an rwkv.cpp (ggml) file; the rwkv backend reads PyTorch .pth weights"
                )
            raise ModelLoadError(
                f"{plain}: the rwkv package reads PyTorch weights named *.pth; rename it {weights.name}"
            )
        raise ModelLoadError(f"model file {weights} does not exist (is `parameters.model` right?)")
    for candidate in (models_dir / f"{model}.tokenizer.json", models_dir / f"{stem}.tokenizer.json"):
        if candidate.is_file():
            return weights, candidate
    raise ModelLoadError(f"the RWKV tokenizer {models_dir / (stem + '.tokenizer.json')} does not exist")


def strategy(config: ModelConfig, cuda_devices: int) -> str:
    """The `rwkv` strategy string: `options: [strategy:…]`, else device from main_gpu and precision."""
    given = config.option_values.get("strategy")
    if given:
        return given
    device = torch_device(config.main_gpu, cuda_devices=cuda_devices)
    dtype = (config.dtype or "").lower()
    if dtype in ("bfloat16", "bf16"):
        precision = "bf16"
    elif dtype in ("float32", "fp32", "float"):
        precision = "fp32"
    else:
        precision = "fp16" if device.startswith("cuda") else "fp32"
    return f"{device} {precision}"


class RWKVBackend(Backend):
    name = "rwkv"

    def __init__(self, config: ModelConfig, models_dir: Path) -> None:
        super().__init__(config, models_dir)
        self._torch: Any = None
        self._model: Any = None
        self._tokenizer: Any = None
        self._eos: int | None = None
        self._context = 0
        self._lock = threading.Lock()
        self.strategy = ""

    async def load(self) -> None:
        # The package reads these at import; JIT off avoids torch.jit's deprecation path by default.
        os.environ.setdefault("RWKV_JIT_ON", "0")
        os.environ.setdefault("RWKV_CUDA_ON", "0")
        try:
            import rwkv.model
            import tokenizers
            import torch
        except ImportError:
            raise unavailable("rwkv") from None
        self._torch = torch
        weights, tokenizer = model_files(self.config, self.models_dir)
        cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
        self.strategy = strategy(self.config, cuda_devices)
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        try:
            self._tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer))
            self._model = await asyncio.to_thread(
                rwkv.model.RWKV, model=str(weights), strategy=self.strategy, verbose=False
            )
        except (OSError, ValueError, RuntimeError, KeyError, AssertionError) as exc:
            raise ModelLoadError(f"rwkv could not load {weights}: {exc}") from exc
        ids = [self._tokenizer.token_to_id(name) for name in EOS_NAMES]
        self._eos = next((i for i in ids if i is not None), 0)
        self._context = context_size(self.config, RNN_CONTEXT)
        log.info("loaded %s with strategy %r", weights.name, self.strategy)

    def capabilities(self) -> Capabilities:
        return Capabilities(completion=True, embeddings=False, max_concurrency=1, context_size=self._context)

    def model_info(self) -> ModelInfo:
        eos = (
            self._tokenizer.id_to_token(self._eos)
            if self._tokenizer is not None and self._eos is not None
            else ""
        )
        return ModelInfo(eos_token=eos or "")

    def tokenize(self, text: str) -> list[int]:
        if self._tokenizer is None:
            raise BackendError("the model is not loaded")
        return list(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def generate(self, prompt: str, params: SamplingParams) -> AsyncIterator[GenerationEvent]:
        if self._model is None:
            raise BackendError("the model is not loaded")
        ids = self.tokenize(prompt)
        check_prompt(len(ids), self._context)
        limit = new_tokens(params, len(ids), self._context)
        words = stop_words(self.config, params)
        return run_in_thread(lambda stream: self._run(stream, ids, params, limit, words))

    def _run(
        self, stream: ThreadStream, ids: list[int], params: SamplingParams, limit: int, words: list[str]
    ) -> Finished:
        torch = self._torch
        decoder = IncrementalDecoder(lambda t: self._tokenizer.decode(t, skip_special_tokens=True))
        stops = StopMatcher(words)
        generator = torch.Generator()
        if random_seed(params.seed):
            generator.seed()
        else:
            generator.manual_seed(params.seed)
        produced = 0
        with self._lock, torch.no_grad():
            logits, state = self._model.forward(ids, None)
            counts: dict[int, int] = {}
            while produced < limit and not stream.cancelled.is_set():
                token = sample(torch, logits.float(), params, counts, generator)
                if token == self._eos and not params.ignore_eos:
                    _send_held(stream, stops)
                    return Finished("stop", len(ids), produced)
                produced += 1
                counts[token] = counts.get(token, 0) + 1
                text = stops.feed(decoder.push([token]))
                stream.send(TextPiece(text))
                if stops.stopped:
                    return Finished("stop", len(ids), produced)
                logits, state = self._model.forward([token], state)
        _send_held(stream, stops)
        return Finished("length" if produced >= limit else "stop", len(ids), produced)

    async def close(self) -> None:
        self._model = None


def _send_held(stream: ThreadStream, stops: StopMatcher) -> None:
    """Text held back as a possible stop word's start, once the generation ends without one."""
    held = stops.flush()
    if held:
        stream.send(TextPiece(held, tokens=0))


def sample(torch: Any, logits: Any, params: SamplingParams, counts: dict[int, int], generator: Any) -> int:
    """One token from a logits vector: biases and penalties, then greedy or temperature/top-k/top-p/min-p."""
    logits = logits.clone()
    for token, bias in params.logit_bias.items():
        if 0 <= token < logits.shape[0]:
            logits[token] += bias
    for token, count in counts.items():
        if params.repeat_penalty > 0 and params.repeat_penalty != 1:
            value = logits[token]
            logits[token] = value / params.repeat_penalty if value > 0 else value * params.repeat_penalty
        logits[token] -= params.presence_penalty + params.frequency_penalty * count
    if params.temperature <= 0:
        return int(torch.argmax(logits).item())
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_k > 0:
        kth = torch.topk(probs, min(params.top_k, probs.shape[0])).values[-1]
        probs = torch.where(probs < kth, torch.zeros_like(probs), probs)
    if params.min_p > 0:
        probs = torch.where(probs < params.min_p * probs.max(), torch.zeros_like(probs), probs)
    if 0 < params.top_p < 1:
        ordered, order = torch.sort(probs, descending=True)
        cumulative = torch.cumsum(ordered, dim=-1)
        drop = cumulative - ordered > params.top_p
        ordered[drop] = 0
        probs = torch.zeros_like(probs).scatter_(0, order, ordered)
    return int(torch.multinomial(probs / probs.sum(), 1, generator=generator).item())
