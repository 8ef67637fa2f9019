"""Backend `llama-ggml`: legacy GGML model files are not served; say how to convert them to GGUF.

LocalAI served pre-GGUF files (ggml, ggmf, ggjt) through a frozen go-llama build. llama.cpp dropped
the format in August 2023, and a converted GGUF file loads with backend `llama`, so this backend only
explains the conversion.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from ..base import Backend, Capabilities, GenerationEvent, ModelLoadError, SamplingParams

GGML_MAGICS: frozenset[bytes] = frozenset({b"lmgg", b"fmgg", b"tjgg", b"algg", b"ggml", b"ggmf", b"ggjt"})
"""The first four bytes of legacy files: 'ggml', 'ggmf', 'ggjt' (and 'ggla' LoRA), as written on disk."""


def legacy_ggml_message(path: Path | str) -> str:
    return (
        f"{path} is a legacy GGML model file, which localmodel does not serve. Convert it to GGUF with "
        "llama.cpp's converter: `python convert_llama_ggml_to_gguf.py --input old.bin --output new.gguf` "
        "(in the llama.cpp repository; add `--eps 1e-5` for LLaMA-2 and `--gqa 8` for 70B models), then "
        "set `backend: llama` and `parameters.model: new.gguf`. Better: download a GGUF build of the model."
    )


class LlamaGgmlBackend(Backend):
    """Refuses to load, with the conversion command."""

    name = "llama-ggml"

    async def load(self) -> None:
        raise ModelLoadError(legacy_ggml_message(self.config.model_file or "the model file"))

    def capabilities(self) -> Capabilities:
        return Capabilities(completion=False, tokenize=False)

    def tokenize(self, text: str) -> list[int]:
        raise ModelLoadError(legacy_ggml_message(self.config.model_file or "the model file"))

    async def generate(self, prompt: str, params: SamplingParams) -> AsyncIterator[GenerationEvent]:
        raise ModelLoadError(legacy_ggml_message(self.config.model_file or "the model file"))
        yield  # pragma: no cover - makes this an async generator
