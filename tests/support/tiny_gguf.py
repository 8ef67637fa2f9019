"""A tiny llama-architecture GGUF with random weights, written with the `gguf` package.

llama.cpp loads it like any model and generates tokens in microseconds, so the llama backend's tests
need no download. The tokenizer is a SentencePiece ("llama") vocabulary of 3 specials, the word
separator `▁` and the 256 byte-fallback tokens `<0x00>`…`<0xFF>`: every text tokenizes (one token per
UTF-8 byte), and random output exercises incomplete and invalid UTF-8 on the way back.

`architecture="qwen2vl"` writes the same model as a Qwen2-VL text model (biases on q, k and v, and
M-RoPE's position sections), the kind whose images take fewer positions than embeddings.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

N_VOCAB = 3 + 1 + 256
N_EMBD = 64
N_HEAD = 4
N_HEAD_KV = 2
N_FF = 128
N_LAYER = 2
N_CTX_TRAIN = 2048

BOS_ID, EOS_ID, UNK_ID = 1, 2, 0
SEPARATOR_ID = 3
"""The token `▁` (SentencePiece's space)."""

DEFAULT_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<{{ message['role'] }}>{{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
)


def byte_token_id(byte: int) -> int:
    """The id of the byte-fallback token for `byte`."""
    return 4 + byte


def add_byte_tokenizer(writer: gguf.GGUFWriter) -> None:
    """The SentencePiece vocabulary described above: 3 specials, `▁` and the 256 byte tokens."""
    tokens = [b"<unk>", b"<s>", b"</s>", "▁".encode()] + [f"<0x{b:02X}>".encode() for b in range(256)]
    types = [
        gguf.TokenType.UNKNOWN,
        gguf.TokenType.CONTROL,
        gguf.TokenType.CONTROL,
        gguf.TokenType.NORMAL,
    ] + [gguf.TokenType.BYTE] * 256
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * len(tokens))
    writer.add_token_types(types)
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_unk_token_id(UNK_ID)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)


def write_tiny_gguf(
    path: Path,
    *,
    seed: int = 0,
    chat_template: str | None = DEFAULT_CHAT_TEMPLATE,
    context_length: int = N_CTX_TRAIN,
    architecture: str = "llama",
) -> Path:
    """Write the model to `path` (about 0.3 MB) and return the path."""
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("tiny-random-llama")
    writer.add_context_length(context_length)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    qwen2vl = architecture == "qwen2vl"
    if qwen2vl:
        # Rotary dimensions per M-RoPE section (time, height, width, unused): half the head's width.
        writer.add_array("qwen2vl.rope.dimension_sections", [2, 3, 3, 0])

    add_byte_tokenizer(writer)
    if chat_template is not None:
        writer.add_chat_template(chat_template)

    def weight(*shape: int, scale: float = 0.5) -> np.ndarray:
        # numpy shape is (rows=out, cols=in); gguf stores it reversed, as llama.cpp expects.
        values: np.ndarray = (rng.standard_normal(shape) * scale / np.sqrt(shape[-1])).astype(np.float32)
        return values

    head_dim = N_EMBD // N_HEAD
    writer.add_tensor("token_embd.weight", weight(N_VOCAB, N_EMBD, scale=8.0))
    for i in range(N_LAYER):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", weight(N_EMBD, N_EMBD))
        writer.add_tensor(f"blk.{i}.attn_k.weight", weight(N_HEAD_KV * head_dim, N_EMBD))
        writer.add_tensor(f"blk.{i}.attn_v.weight", weight(N_HEAD_KV * head_dim, N_EMBD))
        writer.add_tensor(f"blk.{i}.attn_output.weight", weight(N_EMBD, N_EMBD))
        if qwen2vl:
            for name, width in (
                ("attn_q", N_EMBD),
                ("attn_k", N_HEAD_KV * head_dim),
                ("attn_v", N_HEAD_KV * head_dim),
            ):
                writer.add_tensor(f"blk.{i}.{name}.bias", np.zeros(width, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(N_FF, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(N_FF, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(N_EMBD, N_FF))
    writer.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    # A large output scale makes the next-token distribution peaked, so greedy choices are far from
    # ties and do not flip with the batch shape (llama.cpp's sums are not batch-invariant).
    writer.add_tensor("output.weight", weight(N_VOCAB, N_EMBD, scale=30.0))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
