"""A tiny Qwen3-architecture reranker GGUF with random weights, written with the `gguf` package.

It is what llama.cpp's converter makes of a Qwen3 reranker, at toy size: `qwen3.pooling_type = 4`
(rank), a two-label classification head `cls.output.weight` ("yes", "no"), whose softmax's first value
is the relevance score, and a `tokenizer.chat_template.rerank` with `{query}` and `{document}`. The
vocabulary is the tiny model's (tiny_gguf.py). Scores are random but fixed by the weights.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

from tests.support.tiny_gguf import N_EMBD, N_FF, N_HEAD, N_HEAD_KV, N_LAYER, N_VOCAB, add_byte_tokenizer

RERANK_TEMPLATE = "<s>query: {query}\ndocument: {document}\nrelevant:"
CONTEXT = 512


def write_tiny_reranker(path: Path, *, seed: int = 0) -> Path:
    """Write the reranker to `path` (about 0.3 MB) and return the path."""
    rng = np.random.default_rng(seed)
    arch = "qwen3"
    head_dim = N_EMBD // N_HEAD
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("tiny-random-qwen3-reranker")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(10000.0)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_pooling_type(gguf.PoolingType.RANK)
    writer.add_array(f"{arch}.classifier.output_labels", ["yes", "no"])
    add_byte_tokenizer(writer)
    writer.add_string("tokenizer.chat_template.rerank", RERANK_TEMPLATE)

    def weight(*shape: int, scale: float = 0.5) -> np.ndarray:
        values: np.ndarray = (rng.standard_normal(shape) * scale / np.sqrt(shape[-1])).astype(np.float32)
        return values

    def ones(size: int) -> np.ndarray:
        return np.ones(size, dtype=np.float32)

    writer.add_tensor("token_embd.weight", weight(N_VOCAB, N_EMBD, scale=8.0))
    for i in range(N_LAYER):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", ones(N_EMBD))
        writer.add_tensor(f"blk.{i}.attn_q.weight", weight(N_EMBD, N_EMBD))
        writer.add_tensor(f"blk.{i}.attn_k.weight", weight(N_HEAD_KV * head_dim, N_EMBD))
        writer.add_tensor(f"blk.{i}.attn_v.weight", weight(N_HEAD_KV * head_dim, N_EMBD))
        writer.add_tensor(f"blk.{i}.attn_q_norm.weight", ones(head_dim))
        writer.add_tensor(f"blk.{i}.attn_k_norm.weight", ones(head_dim))
        writer.add_tensor(f"blk.{i}.attn_output.weight", weight(N_EMBD, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", ones(N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(N_FF, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(N_FF, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(N_EMBD, N_FF))
    writer.add_tensor("output_norm.weight", ones(N_EMBD))
    writer.add_tensor("output.weight", weight(N_VOCAB, N_EMBD))
    # The classification head: a small scale keeps the two labels' softmax away from 0 and 1.
    writer.add_tensor("cls.output.weight", weight(2, N_EMBD, scale=1.0))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
