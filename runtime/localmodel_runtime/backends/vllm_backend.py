"""Backend `vllm`: vLLM's AsyncLLMEngine — continuous batching, streaming, every engine knob LocalAI names.

The model YAML's `quantization`, `gpu_memory_utilization`, `trust_remote_code`, `enforce_eager`,
`swap_space`, `max_model_len`, `tensor_parallel_size` (plus `dtype`, `load_format`,
`disable_log_stats`, `limit_mm_per_prompt` and free-form `engine_args`) become `AsyncEngineArgs`.
A key the installed vLLM no longer has is dropped with a warning rather than failing the load.
Requests are submitted to the engine as they come; it batches them itself, so `max_concurrency`
is the engine's `max_num_seqs`. `vllm` is imported only in `load()`.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..config import ModelConfig
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
from .hf.model_location import model_location
from .hf.requests import check_prompt, new_tokens, random_seed, stop_words
from .registry import unavailable

log = logging.getLogger(__name__)

DEFAULT_MAX_NUM_SEQS = 256


def engine_kwargs(config: ModelConfig, model: str) -> dict[str, Any]:
    """`AsyncEngineArgs` keyword arguments for the model YAML (only the keys that are set)."""
    kwargs: dict[str, Any] = {"model": model, "trust_remote_code": bool(config.trust_remote_code)}
    for key in (
        "quantization",
        "gpu_memory_utilization",
        "enforce_eager",
        "swap_space",
        "max_model_len",
        "tensor_parallel_size",
        "dtype",
        "load_format",
        "disable_log_stats",
    ):
        value = getattr(config, key)
        if value is not None:
            kwargs[key] = value
    if not config.max_model_len and config.context_size and config.context_size > 0:
        kwargs["max_model_len"] = config.context_size
    if config.tensor_parallel_size == 0:
        del kwargs["tensor_parallel_size"]  # LocalAI's 0 means "unset"
    if config.limit_mm_per_prompt is not None:
        limits = config.limit_mm_per_prompt.model_dump(exclude_none=True)
        if limits:
            kwargs["limit_mm_per_prompt"] = limits
    if config.parameters and config.parameters.seed is not None and config.parameters.seed >= 0:
        kwargs["seed"] = config.parameters.seed
    kwargs.update(config.engine_args or {})
    return kwargs


def supported_kwargs(kwargs: dict[str, Any], fields: set[str]) -> dict[str, Any]:
    """Drop (with a warning) the keys this vLLM's AsyncEngineArgs does not have."""
    dropped = sorted(set(kwargs) - fields)
    if dropped:
        log.warning("this vLLM has no engine argument %s; ignored", ", ".join(dropped))
    return {k: v for k, v in kwargs.items() if k in fields}


def sampling_kwargs(params: SamplingParams, max_tokens: int, stop: list[str]) -> dict[str, Any]:
    """`vllm.SamplingParams` keyword arguments for a request."""
    kwargs: dict[str, Any] = {
        "n": 1,
        "max_tokens": max_tokens,
        "temperature": max(params.temperature, 0.0),
        "top_p": params.top_p if params.temperature > 0 else 1.0,
        "top_k": params.top_k if params.top_k > 0 and params.temperature > 0 else -1,
        "min_p": params.min_p,
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
        "repetition_penalty": params.repeat_penalty if params.repeat_penalty > 0 else 1.0,
        "ignore_eos": params.ignore_eos,
        "stop": stop,
        "skip_special_tokens": True,
    }
    if not random_seed(params.seed):
        kwargs["seed"] = params.seed
    if params.logit_bias:
        kwargs["logit_bias"] = dict(params.logit_bias)
    return kwargs


class VLLMBackend(Backend):
    name = "vllm"

    def __init__(self, config: ModelConfig, models_dir: Path) -> None:
        super().__init__(config, models_dir)
        self._vllm: Any = None
        self._engine: Any = None
        self._tokenizer: Any = None
        self._context = 0
        self._max_seqs = DEFAULT_MAX_NUM_SEQS
        self._info = ModelInfo()

    async def load(self) -> None:
        try:
            import vllm
        except ImportError:
            raise unavailable("vllm") from None
        self._vllm = vllm
        model = model_location(self.config, self.models_dir)
        fields = {f.name for f in dataclasses.fields(vllm.AsyncEngineArgs)}
        kwargs = supported_kwargs(engine_kwargs(self.config, model), fields)
        try:
            args = vllm.AsyncEngineArgs(**kwargs)
            self._engine = vllm.AsyncLLMEngine.from_engine_args(args)
        except (OSError, ValueError, RuntimeError, TypeError) as exc:
            raise ModelLoadError(f"vLLM could not load {model}: {exc}") from exc
        self._max_seqs = int(getattr(args, "max_num_seqs", None) or DEFAULT_MAX_NUM_SEQS)
        self._tokenizer = await _maybe_await(self._engine.get_tokenizer())
        model_config = getattr(self._engine, "model_config", None)
        if model_config is None:  # older engines only have the getter
            model_config = await _maybe_await(self._engine.get_model_config())
        self._context = int(getattr(model_config, "max_model_len", 0) or 0)
        tok = self._tokenizer
        template = getattr(tok, "chat_template", None)
        self._info = ModelInfo(
            chat_template=template if isinstance(template, str) else None,
            bos_token=str(getattr(tok, "bos_token", None) or ""),
            eos_token=str(getattr(tok, "eos_token", None) or ""),
        )

    def capabilities(self) -> Capabilities:
        return Capabilities(
            completion=True,
            embeddings=False,
            tokenize=True,
            max_concurrency=self._max_seqs,
            context_size=self._context,
            structured_output=True,
        )

    def model_info(self) -> ModelInfo:
        return self._info

    def tokenize(self, text: str) -> list[int]:
        if self._tokenizer is None:
            raise BackendError("the model is not loaded")
        bos = getattr(self._tokenizer, "bos_token", None)
        return list(self._tokenizer.encode(text, add_special_tokens=not (bos and text.startswith(bos))))

    async def generate(self, prompt: str, params: SamplingParams) -> AsyncIterator[GenerationEvent]:
        if self._engine is None:
            raise BackendError("the model is not loaded")
        ids = self.tokenize(prompt)
        check_prompt(len(ids), self._context)
        limit = new_tokens(params, len(ids), self._context)
        sampling = self._vllm.SamplingParams(
            **sampling_kwargs(params, limit, stop_words(self.config, params))
        )
        if params.grammar or params.json_schema:
            _add_structure(self._vllm, sampling, params.grammar, params.json_schema)
        request_id = f"localmodel-{uuid.uuid4().hex}"
        text_len = tokens = 0
        finished = False
        try:
            async for output in self._engine.generate({"prompt_token_ids": ids}, sampling, request_id):
                completion = output.outputs[0]
                delta = completion.text[text_len:]
                new = len(completion.token_ids) - tokens
                text_len, tokens = len(completion.text), len(completion.token_ids)
                if delta or new:
                    yield TextPiece(delta, tokens=new)
                if output.finished:
                    finished = True
                    reason: FinishReason = "length" if completion.finish_reason == "length" else "stop"
                    yield Finished(reason, len(ids), tokens)
                    return
        finally:
            if not finished:
                await self._engine.abort(request_id)

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None and hasattr(engine, "shutdown"):
            engine.shutdown()


async def _maybe_await(value: Any) -> Any:
    """vLLM made some engine getters coroutines and back again between versions."""
    if hasattr(value, "__await__"):
        return await value
    return value


def _add_structure(vllm: Any, sampling: Any, grammar: str | None, schema: dict[str, Any] | None) -> None:
    """A GBNF grammar (xgrammar reads GBNF) or a JSON schema as structured output, on the API this vLLM
    has; the grammar wins when both are set."""
    params_mod = vllm.sampling_params
    kwargs: dict[str, Any] = {"grammar": grammar} if grammar else {"json": schema}
    if hasattr(params_mod, "StructuredOutputsParams"):
        sampling.structured_outputs = params_mod.StructuredOutputsParams(**kwargs)
    else:
        sampling.guided_decoding = params_mod.GuidedDecodingParams(**kwargs)
