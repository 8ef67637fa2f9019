"""Pooled outputs of the llama backend (`PooledContexts`): embeddings (`embeddings: true`) and
reranking scores (`reranking: true`), each from its own small llama.cpp context in embedding mode.

A pooled context runs whole texts, several sequences per decode, and reads one vector per sequence:
the pooled embedding, or for rank pooling the classifier's outputs (the relevance score is the first).
Reranking needs a model converted as a reranker — its GGUF says `<arch>.pooling_type = 4` (rank) and
carries the classification head; the (query, document) pair is laid out with the model's
`tokenizer.chat_template.rerank` when it has one, else as llama-server does: query, EOS, SEP, document.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from typing import Any

from ..base import BackendError, InvalidRequest, ModelLoadError, UnsupportedOperation

POOLED_SEQUENCES = 8
"""Texts (or query-document pairs) decoded together in one pooled batch."""
RANK_POOLING = 4
"""llama.cpp's LLAMA_POOLING_TYPE_RANK, as GGUF metadata `<arch>.pooling_type` spells it."""


def pooled_context(lib: Any, model: Any, cparams: Any, *, rank: bool) -> Any:
    """A context in embedding mode on `cparams` (n_ctx = n_batch: a text fits one micro-batch, as
    pooling needs all its tokens in one pass); rank pooling for a reranker, else the model's own
    pooling, or mean pooling for a generative model that has none (as LocalAI/llama-server do)."""
    cparams.n_ubatch = cparams.n_ctx
    cparams.embeddings = True
    cparams.n_seq_max = POOLED_SEQUENCES
    cparams.kv_unified = True
    if rank:
        cparams.pooling_type = lib.LLAMA_POOLING_TYPE_RANK
    ctx = lib.llama_init_from_model(model, cparams)
    if ctx and not rank and lib.llama_pooling_type(ctx) == lib.LLAMA_POOLING_TYPE_NONE:
        lib.llama_free(ctx)
        cparams.pooling_type = lib.LLAMA_POOLING_TYPE_MEAN
        ctx = lib.llama_init_from_model(model, cparams)
    if not ctx:
        raise ModelLoadError(
            f"llama.cpp could not create the {'reranking' if rank else 'embeddings'} context"
        )
    return ctx


def run_pooled(
    lib: Any, ctx: Any, tokenized: list[list[int]], filler: int, read: Callable[[Any], list[float]]
) -> list[list[float]]:
    """One pooled vector per token list, read by `read` from llama.cpp's pooled output of its sequence;
    an empty list is decoded as the single token `filler`."""
    limit = int(lib.llama_n_ctx(ctx))
    out: list[list[float]] = []
    batch = lib.llama_batch_init(limit, 0, 1)
    try:
        i = 0
        while i < len(tokenized):
            # Pack texts while they fit in the context and in the sequence slots.
            group: list[list[int]] = []
            used = 0
            while (
                i < len(tokenized)
                and len(group) < POOLED_SEQUENCES
                and used + max(1, len(tokenized[i])) <= limit
            ):
                group.append(tokenized[i] or [filler])
                used += len(group[-1])
                i += 1
            n = 0
            for seq, tokens in enumerate(group):
                for pos, token in enumerate(tokens):
                    batch.token[n] = token
                    batch.pos[n] = pos
                    batch.n_seq_id[n] = 1
                    batch.seq_id[n][0] = seq
                    batch.logits[n] = True
                    n += 1
            batch.n_tokens = n
            lib.llama_memory_clear(lib.llama_get_memory(ctx), True)
            if lib.llama_decode(ctx, batch) != 0:
                raise BackendError("llama.cpp failed to run the pooled batch")
            for seq in range(len(group)):
                vector = lib.llama_get_embeddings_seq(ctx, seq)
                if not vector:
                    raise BackendError("llama.cpp returned no pooled output")
                out.append(read(vector))
    finally:
        lib.llama_batch_free(batch)
    return out


def normalized(vector: Any, size: int) -> list[float]:
    """The first `size` floats of `vector`, scaled to unit length (OpenAI's embeddings are)."""
    values = [float(vector[k]) for k in range(size)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def rerank_tokens(
    tokenize: Callable[[str, bool], list[int]],
    special: dict[str, int],
    template: str | None,
    query: str,
    document: str,
) -> list[int]:
    """The tokens of one (query, document) pair; `tokenize(text, add_special)` is the model's tokenizer
    and `special` holds its `bos`, `eos` and `sep` ids (-1 when the model has none or does not add it)."""
    if template:
        # The template spells out its own special tokens, as llama-server reads it.
        return tokenize(template.replace("{query}", query).replace("{document}", document), False)
    tokens = [special["bos"]] if special["bos"] >= 0 else []
    tokens += tokenize(query, False)
    tokens += [t for t in (special["eos"], special["sep"]) if t >= 0]
    tokens += tokenize(document, False)
    if special["eos"] >= 0:
        tokens.append(special["eos"])
    return tokens


Tokenize = Callable[[str, bool], list[int]]
"""The model's tokenizer: `(text, add_special) -> token ids`."""


class PooledContexts:
    """The model's embeddings context (`embeddings: true`) and reranking context (`reranking: true`)."""

    def __init__(self, lib: Any, model: Any, vocab: Any, tokenize: Tokenize) -> None:
        self._lib, self._model, self._vocab, self._tokenize = lib, model, vocab, tokenize
        self.embed_ctx: Any = None
        self.rerank_ctx: Any = None
        self._template: str | None = None
        self._lock = threading.Lock()
        """One pooled batch at a time (the two contexts share the lock, not the memory)."""

    def open(self, cparams: Callable[[], Any], *, embeddings: bool, reranking: bool, lora: Any) -> None:
        """Create the contexts the keys ask for, each on fresh `cparams()`, with the LoRA adapters on."""
        if embeddings:
            self.embed_ctx = pooled_context(self._lib, self._model, cparams(), rank=False)
            lora.apply(self.embed_ctx)
        if reranking:
            self.rerank_ctx = pooled_context(self._lib, self._model, cparams(), rank=True)
            lora.apply(self.rerank_ctx)

    def check_reranker(self, meta: Callable[[str], str | None], file: str) -> None:
        """A reranker's GGUF declares rank pooling (and carries the head llama.cpp then applies)."""
        arch = meta("general.architecture") or "?"
        pooling = meta(f"{arch}.pooling_type")
        if pooling != str(RANK_POOLING):
            raise ModelLoadError(
                f"reranking: true, but {file} is not a reranking model: its GGUF does not declare "
                f"rank pooling ({arch}.pooling_type is {pooling or 'unset'}, a reranker's is {RANK_POOLING})"
            )
        self._template = meta("tokenizer.chat_template.rerank")

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if self.embed_ctx is None:
            raise UnsupportedOperation(
                "this model is not loaded for embeddings: set `embeddings: true` in its configuration"
            )
        tokenized = await asyncio.to_thread(lambda: [self._tokenize(text, True) for text in texts])
        limit = int(self._lib.llama_n_ctx(self.embed_ctx))
        for tokens in tokenized:
            if len(tokens) > limit:
                raise InvalidRequest(
                    f"an input has {len(tokens)} tokens; this model embeds at most {limit}",
                    param="input",
                    code="context_length_exceeded",
                )
        n_embd = int(self._lib.llama_model_n_embd(self._model))
        return await asyncio.to_thread(self._run, self.embed_ctx, tokenized, lambda v: normalized(v, n_embd))

    async def rerank(self, query: str, documents: list[str]) -> tuple[list[float], int]:
        if self.rerank_ctx is None:
            raise UnsupportedOperation(
                "this model is not loaded for reranking: set `reranking: true` in its configuration"
            )
        lib, vocab = self._lib, self._vocab
        special = {
            "bos": lib.llama_vocab_bos(vocab) if lib.llama_vocab_get_add_bos(vocab) else -1,
            "eos": lib.llama_vocab_eos(vocab) if lib.llama_vocab_get_add_eos(vocab) else -1,
            "sep": lib.llama_vocab_sep(vocab) if lib.llama_vocab_get_add_sep(vocab) else -1,
        }

        def pairs() -> list[list[int]]:
            return [rerank_tokens(self._tokenize, special, self._template, query, d) for d in documents]

        tokenized = await asyncio.to_thread(pairs)
        limit = int(lib.llama_n_ctx(self.rerank_ctx))
        for i, tokens in enumerate(tokenized):
            if len(tokens) > limit:
                raise InvalidRequest(
                    f"documents[{i}] with the query is {len(tokens)} tokens; the model reads {limit} at most",
                    param=f"documents[{i}]",
                    code="context_length_exceeded",
                )
        scores = await asyncio.to_thread(self._run, self.rerank_ctx, tokenized, lambda v: [float(v[0])])
        return [score[0] for score in scores], sum(len(t) for t in tokenized)

    def _run(
        self, ctx: Any, tokenized: list[list[int]], read: Callable[[Any], list[float]]
    ) -> list[list[float]]:
        filler = max(0, self._lib.llama_vocab_bos(self._vocab))
        with self._lock:
            return run_pooled(self._lib, ctx, tokenized, filler, read)

    def close(self) -> None:
        with self._lock:
            for ctx in (self.embed_ctx, self.rerank_ctx):
                if ctx:
                    self._lib.llama_free(ctx)
            self.embed_ctx = self.rerank_ctx = None
