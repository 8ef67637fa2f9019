"""A tiny multimodal projector (`mmproj`) for the tiny llama GGUF (tiny_gguf.py), written with `gguf`.

llama.cpp's mtmd reads a projector as a GGUF of architecture `clip` with `clip.*` keys and `v.*` / `mm.*`
tensors. This is the simplest kind it serves, LLaVA's `mlp` projector: a 28x28 image is cut into four
14x14 patches, each patch becomes a vector (a convolution plus a position embedding), and a two-layer
MLP (`mm.0`, `mm.2`) maps it to the text model's width, so an image is 4 embeddings in the prompt.
With `block_count: 1` the vision transformer runs no layer at all (LLaVA takes the features of the
layer before the last), but clip.cpp still loads layer 0's required tensors, so they are written.
`n_embd_text` other than the model's width makes a projector that does not match the model.
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


def write_tiny_mmproj(path: Path, *, seed: int = 3, n_embd_text: int = N_EMBD) -> Path:
    """Write the projector to `path` (about 60 kB) and return the path."""
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "clip")
    writer.add_name("tiny-random-mmproj")
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_string("clip.projector_type", "mlp")
    writer.add_bool("clip.use_gelu", True)
    writer.add_uint32("clip.vision.image_size", IMAGE_SIZE)
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

    def weight(*shape: int, scale: float = 1.0) -> np.ndarray:
        # numpy shape is (out, in...); gguf stores it reversed, as ggml expects.
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        values: np.ndarray = (rng.standard_normal(shape) * scale / np.sqrt(fan_in)).astype(np.float32)
        return values

    writer.add_tensor("v.patch_embd.weight", weight(V_EMBD, 3, PATCH_SIZE, PATCH_SIZE))
    writer.add_tensor("v.position_embd.weight", weight(N_PATCHES, V_EMBD, scale=0.1))
    writer.add_tensor("v.blk.0.attn_out.weight", weight(V_EMBD, V_EMBD))
    writer.add_tensor("v.blk.0.ffn_up.weight", weight(V_FF, V_EMBD))
    writer.add_tensor("v.blk.0.ffn_down.weight", weight(V_EMBD, V_FF))
    writer.add_tensor("mm.0.weight", weight(HIDDEN, V_EMBD))
    writer.add_tensor("mm.0.bias", np.zeros(HIDDEN, dtype=np.float32))
    # Large image embeddings, like the tiny model's token embeddings, so an image visibly steers output.
    writer.add_tensor("mm.2.weight", weight(n_embd_text, HIDDEN, scale=8.0))
    writer.add_tensor("mm.2.bias", np.zeros(n_embd_text, dtype=np.float32))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


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
