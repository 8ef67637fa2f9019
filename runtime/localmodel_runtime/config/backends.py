"""Backend names: the ones LocalAI's docs use, their aliases, and what each can serve."""

from __future__ import annotations

import re
from typing import Final

# Canonical backend → the `localmodel[extra]` that brings its library.
BACKEND_EXTRAS: Final[dict[str, str]] = {
    "llama": "llama-cpp",
    "llama-ggml": "llama-cpp",
    "vllm": "vllm",
    "transformers": "transformers",
    "autogptq": "autogptq",
    "exllama": "exllamav2",
    "exllama2": "exllamav2",
    "rwkv": "rwkv",
}

# Alias (lower case) → canonical name. LocalAI lower-cases the name before resolving aliases.
BACKEND_ALIASES: Final[dict[str, str]] = {
    "llama-cpp": "llama",
    "llama.cpp": "llama",
    "go-llama": "llama",
    "llama-stable": "llama",
    "sentencetransformers": "transformers",
    "huggingface-embeddings": "transformers",
    "exllamav2": "exllama2",
}

# Aliases that also fix the model `type` (LocalAI's TypeAlias: it overwrites `type`).
BACKEND_TYPE_ALIASES: Final[dict[str, str]] = {
    "sentencetransformers": "SentenceTransformer",
    "huggingface-embeddings": "SentenceTransformer",
}

BACKEND_NAME_PATTERN: Final = re.compile(r"^[a-zA-Z0-9_-]*$")
"""LocalAI's own rule for `backend` (its Validate()); `.` is allowed only through the alias table."""


def canonical_backend(name: str | None) -> str | None:
    """Map a backend name to the one localmodel serves it with, or None when it names none we know."""
    if not name:
        return None
    lowered = name.lower()
    lowered = BACKEND_ALIASES.get(lowered, lowered)
    return lowered if lowered in BACKEND_EXTRAS else None


def guess_backend(model_file: str | None) -> str | None:
    """LocalAI's auto-detection, reduced to what we serve: GGUF (and legacy .bin files) → llama."""
    if not model_file:
        return None
    lowered = model_file.lower()
    if lowered.endswith((".gguf", ".gguf.bin")) or ".gguf" in lowered:
        return "llama"
    if lowered.endswith((".ggml", ".ggmlv3.bin")) or "ggml" in lowered:
        return "llama-ggml"
    if lowered.endswith(".bin"):
        return "llama"
    if lowered.endswith(".pth") or "rwkv" in lowered:
        return "rwkv"
    if "/" in lowered and not lowered.startswith(("/", "file:", "http:", "https:")):
        # A Hugging Face repository id: transformers loads it by id.
        return "transformers"
    return None
