"""Model configs for tests: one factory, and the tiny generated GGUF's config runtime tests start from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from localmodel_runtime.config import ModelConfig

TINY_LLAMA: dict[str, Any] = {
    "name": "tiny",
    "backend": "llama",
    "context_size": 256,
    "parameters": {"model": "tiny.gguf"},
}
"""The tiny generated GGUF (the `tiny_gguf` fixture's file) on the llama backend."""


def tiny_gguf_config(**keys: Any) -> dict[str, Any]:
    """TINY_LLAMA's YAML form with `keys` set over it (top-level keys replace the base's)."""
    return {**TINY_LLAMA, **keys}


def model_config(base: Mapping[str, Any] | None = None, **keys: Any) -> ModelConfig:
    """A validated ModelConfig: `base` (default: just a name) with `keys` set over it."""
    return ModelConfig.model_validate({"name": "m", **(base or {}), **keys})
