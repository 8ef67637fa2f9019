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


def role_lines_template(answer_cue: str = "assistant:") -> dict[str, str]:
    """A LocalAI template that writes each message as `role: content`, then `answer_cue` on a line of its
    own for the model to go on from (the completion template is the prompt as it is)."""
    return {
        "chat_message": "{{.RoleName}}: {{.Content}}",
        "chat": "{{.Input}}\n" + answer_cue,
        "completion": "{{.Input}}",
    }


def one_slot_config() -> dict[str, Any]:
    """The tiny GGUF with one slot, a 32768-token context and no end of sequence: a stream that is not
    closed generates for as long as a test needs, so the requests behind it wait."""
    return tiny_gguf_config(
        context_size=32768, options=["parallel:1"], parameters={"model": "tiny.gguf", "ignore_eos": True}
    )


def model_config(base: Mapping[str, Any] | None = None, **keys: Any) -> ModelConfig:
    """A validated ModelConfig: `base` (default: just a name) with `keys` set over it."""
    return ModelConfig.model_validate({"name": "m", **(base or {}), **keys})
