"""A request for a Python-library backend: its token budget, its stop words and its `generate()` arguments."""

from __future__ import annotations

from typing import Any

from ...config import ModelConfig
from ...stops import merge_stops
from ..base import InvalidRequest, SamplingParams

DEFAULT_CONTEXT = 2048
"""Context when neither `context_size` nor the model's config says one."""


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
    return merge_stops(config.stopwords, params.stop)


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
