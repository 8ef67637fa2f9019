"""A Hugging Face tokenizer directory for Gemma 3 270M, made offline from the GGUF's own vocabulary.

AIPerf needs a tokenizer to size its synthetic prompts, and no model hub can be reached here.
transformers' GGUF converter gives Gemma 3 a tokenizer that splits words into pieces ("capital" ->
4 tokens). The GGUF's scores are merge ranks (score = -rank), which is what llama.cpp's SentencePiece
tokenizer merges by, so this writes the equivalent BPE: the vocabulary, one merge for every way a
token splits into two tokens (ordered by the merged token's rank, then by its parts' ranks), spaces as
"▁", byte fallback. tests/unit/test_bench_tokenizer.py compares it with llama.cpp's tokenizer.

    .cache/venv-aiperf/bin/python bench/gemma_tokenizer.py GGUF OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gguf import GGUFReader
from tokenizers import Tokenizer, decoders, normalizers
from tokenizers.models import BPE

_NORMAL, _CONTROL, _USER = (
    1,
    3,
    4,
)  # llama.cpp token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 6 byte


def _strings(reader: GGUFReader, key: str) -> list[str]:
    field = reader.fields[key]
    return [bytes(field.parts[i]).decode("utf-8", errors="replace") for i in field.data]


def _numbers(reader: GGUFReader, key: str) -> list[float]:
    field = reader.fields[key]
    return [float(field.parts[i][0]) for i in field.data]


def _scalar(reader: GGUFReader, key: str) -> int:
    return int(reader.fields[key].parts[-1][0])


def _vocab(tokens: list[str]) -> dict[str, int]:
    vocab: dict[str, int] = {}
    for index, token in enumerate(tokens):
        vocab.setdefault(token, index)
    return vocab


def _merges(tokens: list[str], scores: list[float], types: list[int]) -> list[tuple[str, str]]:
    """Every (left, right) whose concatenation is a normal token, best-scored result first."""
    score = {t: s for t, s, kind in zip(tokens, scores, types, strict=True) if kind == _NORMAL}
    found: list[tuple[float, float, float, str, str]] = []
    for token, merged in score.items():
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in score and right in score:
                found.append((-merged, -score[left], -score[right], left, right))
    found.sort()
    return [(left, right) for *_, left, right in found]


def build(gguf: Path, out: Path) -> Path:
    reader = GGUFReader(str(gguf))
    tokens = _strings(reader, "tokenizer.ggml.tokens")
    scores = _numbers(reader, "tokenizer.ggml.scores")
    types = [int(t) for t in _numbers(reader, "tokenizer.ggml.token_type")]
    unk = _scalar(reader, "tokenizer.ggml.unknown_token_id")
    bos = _scalar(reader, "tokenizer.ggml.bos_token_id")
    eos = _scalar(reader, "tokenizer.ggml.eos_token_id")
    tokenizer = Tokenizer(
        BPE(
            vocab=_vocab(tokens),
            merges=_merges(tokens, scores, types),
            unk_token=tokens[unk],
            byte_fallback=True,
        )
    )
    tokenizer.normalizer = normalizers.Replace(" ", "▁")
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    special = [t for t, kind in zip(tokens, types, strict=True) if kind in (_CONTROL, _USER)]
    tokenizer.add_special_tokens(special)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": tokens[bos],
        "eos_token": tokens[eos],
        "unk_token": tokens[unk],
        "add_bos_token": False,
        "model_max_length": 32768,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: gemma_tokenizer.py GGUF OUT_DIR")
    print(build(Path(sys.argv[1]), Path(sys.argv[2])))
