"""The llama.cpp sampler chain of one request (llama.cpp's common order), built off the worker thread."""

from __future__ import annotations

import random
from typing import Any

from ..base import InvalidRequest, SamplingParams

_NEG_INF = float("-inf")


def build_sampler(
    lib: Any,
    *,
    vocab: Any,
    n_vocab: int,
    n_ctx: int,
    params: SamplingParams,
    grammar: str | None,
    prompt: list[int],
    eog_tokens: list[int],
) -> Any:
    """A llama.cpp sampler chain for one request, in llama.cpp's common order.

    Prompt tokens are fed to the penalties sampler only (as llama-server does), before it joins the
    chain, so a grammar never sees them.
    """
    chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
    biases = dict(params.logit_bias)
    if params.ignore_eos:
        for token in eog_tokens:
            biases[token] = _NEG_INF
    biases = {t: b for t, b in biases.items() if 0 <= t < n_vocab}
    if biases:
        array = (lib.llama_logit_bias * len(biases))()
        for i, (token, bias) in enumerate(biases.items()):
            array[i].token = token
            array[i].bias = bias
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_logit_bias(n_vocab, len(biases), array))
    if grammar:
        grammar_sampler = lib.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        if not grammar_sampler:
            lib.llama_sampler_free(chain)
            raise InvalidRequest("the grammar is not valid GBNF", param="grammar", code="invalid_grammar")
        lib.llama_sampler_chain_add(chain, grammar_sampler)
    last_n = n_ctx if params.repeat_last_n < 0 else params.repeat_last_n
    penalize = params.repeat_penalty not in (0.0, 1.0) or params.frequency_penalty or params.presence_penalty
    if penalize and last_n > 0:
        penalties = lib.llama_sampler_init_penalties(
            n_vocab, last_n, params.repeat_penalty or 1.0, params.frequency_penalty, params.presence_penalty
        )
        for token in prompt[-last_n:]:
            lib.llama_sampler_accept(penalties, token)
        lib.llama_sampler_chain_add(chain, penalties)
    seed = params.seed if params.seed is not None and params.seed >= 0 else random.getrandbits(32)
    seed &= 0xFFFFFFFF
    if seed == 0xFFFFFFFF:
        seed = 0xFFFFFFFE  # llama.cpp reads 0xFFFFFFFF as "random"; keep a given seed deterministic
    if params.temperature <= 0:
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
    elif params.mirostat == 1:
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(params.temperature))
        lib.llama_sampler_chain_add(
            chain,
            lib.llama_sampler_init_mirostat(n_vocab, seed, params.mirostat_tau, params.mirostat_eta, 100),
        )
    elif params.mirostat == 2:
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(params.temperature))
        lib.llama_sampler_chain_add(
            chain, lib.llama_sampler_init_mirostat_v2(seed, params.mirostat_tau, params.mirostat_eta)
        )
    else:
        if params.top_k > 0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(params.top_k))
        if 0 < params.typical_p < 1:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_typical(params.typical_p, 1))
        if 0 < params.top_p < 1:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(params.top_p, 1))
        if params.min_p > 0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_min_p(params.min_p, 1))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(params.temperature))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(seed))
    return chain
