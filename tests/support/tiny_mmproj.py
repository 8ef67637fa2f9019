"""A tiny multimodal projector (`mmproj`) for the tiny llama GGUF (tiny_gguf.py), written with `gguf`.

llama.cpp's mtmd reads a projector as a GGUF of architecture `clip` with `clip.*` keys and `v.*` / `mm.*`
tensors. This is the simplest kind it serves, LLaVA's `mlp` projector: a 28x28 image is cut into four
14x14 patches, each patch becomes a vector (a convolution plus a position embedding), and a two-layer
MLP (`mm.0`, `mm.2`) maps it to the text model's width, so an image is 4 embeddings in the prompt.
With `block_count: 1` the vision transformer runs no layer at all (LLaVA takes the features of the
layer before the last), but clip.cpp still loads layer 0's required tensors, so they are written.
`n_embd_text` other than the model's width makes a projector that does not match the model.

`write_tiny_qwen2vl_mmproj` writes Qwen2-VL's merger instead, for the tiny model written as a
`qwen2vl` text model: an image of 4x3 merged patches is 12 embeddings that take 4 positions (M-RoPE).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import gguf
import numpy as np

from tests.support.tiny_gguf import N_EMBD

IMAGE_SIZE = 28
PATCH_SIZE = 14
N_PATCHES = (IMAGE_SIZE // PATCH_SIZE) ** 2
"""Embeddings one image becomes in the prompt."""
V_EMBD = 32
V_FF = 64
V_HEAD = 2
HIDDEN = 64


class _Projector:
    """A projector file being written: the keys every vision projector has, and random weights."""

    def __init__(self, path: Path, projector: str, *, image_size: int, n_embd_text: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.writer = writer = gguf.GGUFWriter(str(path), "clip")
        writer.add_name(f"tiny-random-{projector}")
        writer.add_bool("clip.has_vision_encoder", True)
        writer.add_string("clip.projector_type", projector)
        writer.add_uint32("clip.vision.image_size", image_size)
        writer.add_uint32("clip.vision.patch_size", PATCH_SIZE)
        writer.add_uint32("clip.vision.embedding_length", V_EMBD)
        writer.add_uint32("clip.vision.feed_forward_length", V_FF)
        writer.add_uint32("clip.vision.block_count", 1)
        writer.add_uint32("clip.vision.projection_dim", n_embd_text)
        writer.add_uint32("clip.vision.attention.head_count", V_HEAD)
        writer.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
        writer.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
        writer.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
        writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    def weight(self, name: str, *shape: int, scale: float = 1.0) -> None:
        # numpy shape is (out, in...); gguf stores it reversed, as ggml expects.
        fan_in = int(np.prod(shape[1:]))
        values = (self.rng.standard_normal(shape) * scale / np.sqrt(fan_in)).astype(np.float32)
        self.writer.add_tensor(name, values)

    def constant(self, name: str, width: int, value: float = 0.0) -> None:
        self.writer.add_tensor(name, np.full(width, value, dtype=np.float32))

    def close(self, path: Path) -> Path:
        self.writer.write_header_to_file()
        self.writer.write_kv_data_to_file()
        self.writer.write_tensors_to_file()
        self.writer.close()
        return path


def write_tiny_mmproj(path: Path, *, seed: int = 3, n_embd_text: int = N_EMBD) -> Path:
    """Write the LLaVA projector to `path` (about 60 kB) and return the path."""
    out = _Projector(path, "mlp", image_size=IMAGE_SIZE, n_embd_text=n_embd_text, seed=seed)
    out.writer.add_bool("clip.use_gelu", True)
    out.weight("v.patch_embd.weight", V_EMBD, 3, PATCH_SIZE, PATCH_SIZE)
    out.weight("v.position_embd.weight", N_PATCHES, V_EMBD, scale=0.1)
    out.weight("v.blk.0.attn_out.weight", V_EMBD, V_EMBD)
    out.weight("v.blk.0.ffn_up.weight", V_FF, V_EMBD)
    out.weight("v.blk.0.ffn_down.weight", V_EMBD, V_FF)
    out.weight("mm.0.weight", HIDDEN, V_EMBD)
    out.constant("mm.0.bias", HIDDEN)
    # Large image embeddings, like the tiny model's token embeddings, so an image visibly steers output.
    out.weight("mm.2.weight", n_embd_text, HIDDEN, scale=8.0)
    out.constant("mm.2.bias", n_embd_text)
    return out.close(path)


def write_tiny_qwen2vl_mmproj(path: Path, *, seed: int = 1) -> Path:
    """Qwen2-VL's `qwen2vl_merger`: one vision layer (its M-RoPE positions are an input), then 2x2
    patches merged by a two-layer MLP into the text model's width."""
    out = _Projector(path, "qwen2vl_merger", image_size=56, n_embd_text=N_EMBD, seed=seed)
    # Small images stay small: 4 to 64 merged patches of 2x2 patches.
    out.writer.add_uint32("clip.vision.image_min_pixels", 4 * 4 * PATCH_SIZE * PATCH_SIZE)
    out.writer.add_uint32("clip.vision.image_max_pixels", 64 * 4 * PATCH_SIZE * PATCH_SIZE)
    out.weight("v.patch_embd.weight", V_EMBD, 3, PATCH_SIZE, PATCH_SIZE)
    out.weight("v.patch_embd.weight.1", V_EMBD, 3, PATCH_SIZE, PATCH_SIZE)
    for norm in ("ln1", "ln2"):
        out.constant(f"v.blk.0.{norm}.weight", V_EMBD, 1.0)
        out.constant(f"v.blk.0.{norm}.bias", V_EMBD)
    for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
        out.weight(f"v.blk.0.{name}.weight", V_EMBD, V_EMBD)
        out.constant(f"v.blk.0.{name}.bias", V_EMBD)
    out.weight("v.blk.0.ffn_up.weight", V_FF, V_EMBD)
    out.constant("v.blk.0.ffn_up.bias", V_FF)
    out.weight("v.blk.0.ffn_down.weight", V_EMBD, V_FF)
    out.constant("v.blk.0.ffn_down.bias", V_EMBD)
    out.weight("mm.0.weight", HIDDEN, V_EMBD * 4)
    out.constant("mm.0.bias", HIDDEN)
    out.weight("mm.2.weight", N_EMBD, HIDDEN, scale=8.0)
    out.constant("mm.2.bias", N_EMBD)
    return out.close(path)


def png_image(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A PNG file of one colour (8-bit RGB), for requests that carry an image."""
    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
