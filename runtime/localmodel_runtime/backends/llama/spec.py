"""Speculative decoding for the llama batch engine (`draft_model`, `n_draft`).

A small draft model with the same vocabulary guesses the next few tokens of every generating sequence
(greedily, in its own context with one sequence per engine slot); the engine then decodes the pending
token and the guesses in one step of the main model and samples each position in turn with the request's
own sampler, keeping guesses while they equal what the main model samples and stopping at the first that
does not (llama.cpp's `common_sampler_sample_and_accept_n`). Every emitted token is therefore the main
model's own choice — greedy output is identical with and without a draft — and a step yields between one
and `n_draft + 1` tokens. The draft's KV follows each slot's tokens by common prefix, so rejected guesses
are dropped and a new request reuses what the draft already read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..base import ModelLoadError
from .slots import Slot, common_prefix

DEFAULT_N_DRAFT = 16
"""LocalAI's default when `n_draft` is 0 or unset (llama.cpp's speculative.n_max)."""


def check_same_vocabulary(lib: Any, vocab: Any, draft_vocab: Any, name: str) -> None:
    """A draft must tokenize exactly as the main model does: same size, specials and token texts."""
    n, m = lib.llama_vocab_n_tokens(vocab), lib.llama_vocab_n_tokens(draft_vocab)
    problem = None
    if lib.llama_vocab_type(vocab) != lib.llama_vocab_type(draft_vocab):
        problem = "another tokenizer type"
    elif n != m:
        problem = f"{m} tokens, the model has {n}"
    elif (lib.llama_vocab_bos(vocab), lib.llama_vocab_eos(vocab)) != (
        lib.llama_vocab_bos(draft_vocab),
        lib.llama_vocab_eos(draft_vocab),
    ):
        problem = "other BOS/EOS tokens"
    else:
        for token in range(n):
            if lib.llama_vocab_get_text(vocab, token) != lib.llama_vocab_get_text(draft_vocab, token):
                problem = f"token {token} differs"
                break
    if problem:
        raise ModelLoadError(f"draft_model {name} has another vocabulary than the model ({problem})")


@dataclass
class DraftStats:
    drafted: int = 0
    """Guesses the main model checked."""
    accepted: int = 0
    """Guesses it kept."""

    @property
    def acceptance(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0


class Drafter:
    """The draft model's context; used by the engine's worker thread only."""

    def __init__(
        self, lib: Any, ctx: Any, vocab: Any, *, n_parallel: int, n_batch: int, n_draft: int
    ) -> None:
        self._lib = lib
        self._ctx = ctx
        self._vocab = vocab
        self._mem = lib.llama_get_memory(ctx)
        self._n_batch = n_batch
        self.n_draft = n_draft
        self._cached: list[list[int]] = [[] for _ in range(n_parallel)]
        self._batch = lib.llama_batch_init(max(n_batch, n_parallel), 0, 1)
        self._greedy = lib.llama_sampler_init_greedy()
        self.stats = DraftStats()

    def close(self) -> None:
        self._lib.llama_batch_free(self._batch)
        self._lib.llama_sampler_free(self._greedy)

    def forget(self, seq: int) -> None:
        self._lib.llama_memory_seq_rm(self._mem, seq, -1, -1)
        self._cached[seq] = []

    def guesses(self, slots: list[Slot], n_ctx_seq: int) -> dict[int, list[int]]:
        """The guesses for every generating slot that has room for some (context and max_tokens)."""
        wants: dict[int, tuple[list[int], int]] = {}
        for slot in slots:
            request = slot.request
            if request is None or slot.pending is None or request.images:
                continue  # the draft model cannot see images: it would guess blind
            room = n_ctx_seq - len(slot.cached) - 1
            limit = request.params.max_tokens
            if limit and limit > 0:
                room = min(room, limit - slot.n_generated - 1)
            k = min(self.n_draft, room)
            if k > 0:
                wants[slot.seq_id] = ([*slot.cached, slot.pending], k)
        return self.draft(wants) if wants else {}

    def draft(self, wants: dict[int, tuple[list[int], int]]) -> dict[int, list[int]]:
        """Up to `k` greedy guesses per sequence, for `wants`: seq → (its tokens so far, k)."""
        lib = self._lib
        # Catch up: every sequence's tokens but the last into the draft's KV (chunks of n_batch), then
        # every last token in one decode, whose logits give the first guesses.
        feed: list[tuple[int, int, int]] = []  # (seq, position, token) to decode without logits
        for seq, (tokens, _) in wants.items():
            keep = min(common_prefix(self._cached[seq], tokens), len(tokens) - 1)
            if keep < len(self._cached[seq]) and not lib.llama_memory_seq_rm(self._mem, seq, keep, -1):
                keep = 0
                lib.llama_memory_seq_rm(self._mem, seq, -1, -1)
            self._cached[seq] = tokens[:keep]
            feed += [(seq, pos, tokens[pos]) for pos in range(keep, len(tokens) - 1)]
            self._cached[seq] += tokens[keep:-1]
        for start in range(0, len(feed), self._n_batch):
            self._decode(feed[start : start + self._n_batch], logits=False)
        last = [(seq, len(tokens) - 1, tokens[-1]) for seq, (tokens, _) in wants.items()]
        drafts: dict[int, list[int]] = {seq: [] for seq in wants}
        while last:
            self._decode(last, logits=True)
            following: list[tuple[int, int, int]] = []
            for i, (seq, pos, token) in enumerate(last):
                self._cached[seq].append(token)
                guess = int(lib.llama_sampler_sample(self._greedy, self._ctx, i))
                drafts[seq].append(guess)
                if len(drafts[seq]) < wants[seq][1] and not lib.llama_vocab_is_eog(self._vocab, guess):
                    following.append((seq, pos + 1, guess))
            last = following
        return drafts

    def _decode(self, tokens: list[tuple[int, int, int]], *, logits: bool) -> None:
        if not tokens:
            return
        lib, batch = self._lib, self._batch
        for n, (seq, pos, token) in enumerate(tokens):
            batch.token[n] = token
            batch.pos[n] = pos
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = seq
            batch.logits[n] = logits
        batch.n_tokens = len(tokens)
        status = lib.llama_decode(self._ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode of the draft model returned {status}")
