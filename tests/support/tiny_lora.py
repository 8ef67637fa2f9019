"""Tiny LoRA adapters for the tiny llama GGUF (tiny_gguf.py), written with the `gguf` package.

llama.cpp's adapter format: a GGUF with `general.type = adapter`, `adapter.type = lora`,
`adapter.lora.alpha`, and for each adapted weight `W` (numpy shape out x in) the pair
`<W>.lora_a` (rank x in) and `<W>.lora_b` (out x rank); the update is `scale * alpha / rank * B @ A`.
The adapters here change `output.weight` and `blk.*.ffn_down.weight` enough to change greedy output.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

from tests.support.tiny_gguf import N_EMBD, N_FF, N_LAYER, N_VOCAB

RANK = 4


def write_tiny_lora(
    path: Path,
    *,
    seed: int = 1,
    sign: float = 1.0,
    n_embd: int = N_EMBD,
    architecture: str = "llama",
) -> Path:
    """Write an adapter to `path` and return it.

    The same `seed` with `sign=-1.0` gives the exact opposite update, so the two applied together at
    scale 1 cancel out. `n_embd` other than the model's makes an adapter that does not fit it.
    """
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(RANK))

    def pair(name: str, rows: int, cols: int, scale: float) -> None:
        a = (rng.standard_normal((RANK, cols)) / np.sqrt(cols)).astype(np.float32)
        b = (sign * scale * rng.standard_normal((rows, RANK)) / np.sqrt(RANK)).astype(np.float32)
        writer.add_tensor(f"{name}.lora_a", a)
        writer.add_tensor(f"{name}.lora_b", b)

    pair("output.weight", N_VOCAB, n_embd, 30.0)
    for i in range(N_LAYER):
        pair(f"blk.{i}.ffn_down.weight", n_embd, N_FF, 1.0)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
