"""Backends `exllama` and `exllama2`: EXL2 / GPTQ model directories through ExLlamaV2's dynamic generator.

Both names are served by ExLlamaV2 (the original exllama is unmaintained and ExLlamaV2 reads its GPTQ
models). `parameters.model` is a model directory; `context_size` sets the sequence length, `tensor_split`
a manual GPU split (else the weights are split automatically), `options: [parallel:N]` the batch size.
One worker thread drives the dynamic generator, which batches every queued job continuously; each
request is a job whose results are handed to its async iterator. `exllamav2` is imported in `load()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ModelConfig, canonical_backend
from .base import (
    Backend,
    BackendError,
    Capabilities,
    Finished,
    FinishReason,
    GenerationEvent,
    ModelInfo,
    ModelLoadError,
    SamplingParams,
    TextPiece,
)
from .hf.generate import ThreadStream
from .hf.requests import check_prompt, new_tokens, random_seed, stop_words
from .registry import unavailable

log = logging.getLogger(__name__)

DEFAULT_PARALLEL = 4


def sampler_settings(params: SamplingParams) -> dict[str, Any]:
    """`ExLlamaV2Sampler.Settings` attributes for a request (greedy is top_k 1)."""
    greedy = params.temperature <= 0
    settings: dict[str, Any] = {
        "temperature": 1.0 if greedy else params.temperature,
        "top_k": 1 if greedy else max(params.top_k, 0),
        "top_p": 0.0 if greedy else params.top_p,
        "min_p": params.min_p,
        "typical": params.typical_p if 0 < params.typical_p < 1 else 0.0,
        "token_repetition_penalty": params.repeat_penalty if params.repeat_penalty > 0 else 1.0,
        "token_presence_penalty": params.presence_penalty,
        "token_frequency_penalty": params.frequency_penalty,
    }
    if params.mirostat:
        settings.update(mirostat=True, mirostat_tau=params.mirostat_tau, mirostat_eta=params.mirostat_eta)
    return settings


def gpu_split(tensor_split: str | None) -> list[float] | None:
    if not tensor_split:
        return None
    try:
        return [float(x) for x in tensor_split.split(",") if x.strip()]
    except ValueError:
        raise ModelLoadError(f"tensor_split {tensor_split!r} is not a list of numbers") from None


@dataclass
class _Request:
    job: Any
    stream: ThreadStream
    prompt_tokens: int
    max_new_tokens: int
    produced: int = 0
    started: bool = field(default=False)


class ExLlamaV2Backend(Backend):
    name = "exllama2"

    def __init__(self, config: ModelConfig, models_dir: Path) -> None:
        super().__init__(config, models_dir)
        self.name = canonical_backend(config.backend) or "exllama2"
        self._lib: Any = None
        self._generator: Any = None
        self._tokenizer: Any = None
        self._context = 0
        self._parallel = DEFAULT_PARALLEL
        self._pending: queue.Queue[_Request | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._info = ModelInfo()

    async def load(self) -> None:
        try:
            import exllamav2
            import exllamav2.attn
            import exllamav2.generator
        except ImportError:
            raise unavailable(self.name) from None
        self._lib = exllamav2
        model = self.config.model_file
        if not model:
            raise ModelLoadError(
                "parameters.model is not set: name the model directory in the models directory"
            )
        path = self.models_dir / model
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is not a model directory with a config.json (EXL2 or GPTQ weights)")
        parallel = self.config.option_values.get("parallel")
        self._parallel = (
            int(parallel) if parallel and parallel.isdigit() and int(parallel) > 0 else DEFAULT_PARALLEL
        )
        await asyncio.to_thread(self._load_sync, str(path))
        self._worker = threading.Thread(target=self._run, name="exllamav2", daemon=True)
        self._worker.start()

    def _load_sync(self, path: str) -> None:
        lib, cfg = self._lib, self.config
        # The dynamic generator batches only with paged attention, which needs flash-attn >= 2.5.7;
        # without it (seen on an H200 without flash-attn) it serves one sequence at a time.
        paged = bool(getattr(getattr(lib, "attn", None), "has_flash_attn_with_paged", False))
        if not paged:
            self._parallel = 1
        try:
            config = lib.ExLlamaV2Config(path)
            config.arch_compat_overrides()
            if cfg.context_size and cfg.context_size > 0:
                config.max_seq_len = cfg.context_size
            model = lib.ExLlamaV2(config)
            cache = lib.ExLlamaV2Cache(model, max_seq_len=config.max_seq_len * self._parallel, lazy=True)
            split = gpu_split(cfg.tensor_split)
            if split:
                model.load(gpu_split=split)
            else:
                model.load_autosplit(cache, progress=False)
            tokenizer = lib.ExLlamaV2Tokenizer(config)
            self._generator = lib.generator.ExLlamaV2DynamicGenerator(
                model=model, cache=cache, tokenizer=tokenizer, max_batch_size=self._parallel, paged=paged
            )
        except (OSError, ValueError, RuntimeError, AssertionError) as exc:
            raise ModelLoadError(f"ExLlamaV2 could not load {path}: {exc}") from exc
        self._tokenizer = tokenizer
        self._context = int(config.max_seq_len)
        self._info = ModelInfo(
            bos_token=str(getattr(tokenizer, "bos_token", None) or ""),
            eos_token=str(getattr(tokenizer, "eos_token", None) or ""),
        )

    def capabilities(self) -> Capabilities:
        return Capabilities(
            completion=True, embeddings=False, max_concurrency=self._parallel, context_size=self._context
        )

    def model_info(self) -> ModelInfo:
        return self._info

    def tokenize(self, text: str) -> list[int]:
        if self._tokenizer is None:
            raise BackendError("the model is not loaded")
        bos = getattr(self._tokenizer, "bos_token", None)
        ids = self._tokenizer.encode(
            text, add_bos=not (bos and text.startswith(bos)), encode_special_tokens=True
        )
        return [int(t) for t in ids.reshape(-1).tolist()]

    async def generate(self, prompt: str, params: SamplingParams) -> AsyncIterator[GenerationEvent]:
        if self._generator is None:
            raise BackendError("the model is not loaded")
        lib = self._lib
        ids = self.tokenize(prompt)
        check_prompt(len(ids), self._context)
        limit = new_tokens(params, len(ids), self._context)
        settings = lib.generator.ExLlamaV2Sampler.Settings()
        for key, value in sampler_settings(params).items():
            setattr(settings, key, value)
        if params.logit_bias:
            log.debug("exllamav2 ignores logit_bias")
        stops: list[Any] = [] if params.ignore_eos else [self._tokenizer.eos_token_id]
        stops.extend(stop_words(self.config, params))
        stream = ThreadStream(asyncio.get_running_loop())
        job = lib.generator.ExLlamaV2DynamicJob(
            input_ids=self._lib_tensor(ids),
            max_new_tokens=limit,
            gen_settings=settings,
            stop_conditions=stops,
            seed=None if random_seed(params.seed) else params.seed,
            decode_special_tokens=False,
        )
        self._pending.put(_Request(job, stream, len(ids), limit))
        async with contextlib.aclosing(stream.events()) as events:  # closing us closes it at once
            async for event in events:
                yield event

    def _lib_tensor(self, ids: list[int]) -> Any:
        import torch

        return torch.tensor([ids], dtype=torch.long)

    def _run(self) -> None:
        """The worker: admit new jobs, step the generator, route results, drop cancelled jobs."""
        active: dict[int, _Request] = {}
        while True:
            try:
                item = self._pending.get(timeout=None if not active else 0)
                if item is None:
                    return
                self._generator.enqueue(item.job)
                active[id(item.job)] = item
                continue  # admit everything queued before stepping
            except queue.Empty:
                pass
            for key, request in list(active.items()):
                if request.stream.cancelled.is_set():
                    self._generator.cancel(request.job)
                    del active[key]
            if not active:
                continue
            try:
                results = self._generator.iterate()
            except Exception as exc:  # the generator is broken: fail every active request
                for request in active.values():
                    request.stream.send(BackendError(f"generation failed: {exc}"))
                active.clear()
                continue
            for result in results:
                owner = active.get(id(result["job"]))
                if owner is None or result.get("stage") != "streaming":
                    continue
                request = owner
                new = result.get("token_ids")
                count = int(new.shape[-1]) if new is not None else 0
                request.produced += count
                if result.get("text") or count:
                    request.stream.send(TextPiece(result.get("text", ""), tokens=count))
                if result.get("eos"):
                    reason: FinishReason = (
                        "length" if result.get("eos_reason") == "max_new_tokens" else "stop"
                    )
                    request.stream.send(Finished(reason, request.prompt_tokens, request.produced))
                    del active[id(result["job"])]

    async def close(self) -> None:
        if self._worker is not None:
            self._pending.put(None)
            await asyncio.to_thread(self._worker.join, 30)
            self._worker = None
        self._generator = None
