"""Kubernetes object names for models whose API names are not valid ones."""

from __future__ import annotations

import hashlib
import re

# The Service is named after the LocalModel, so the name must be a DNS-1035 label: lower-case
# letters, digits and '-', starting with a letter, at most 63 characters.
MAX_NAME = 63
_MODEL_SUFFIXES = (
    ".gguf.bin",
    ".ggmlv3.bin",
    ".gguf",
    ".ggml",
    ".bin",
    ".safetensors",
    ".pth",
    ".yaml",
    ".yml",
)
_VALID = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def is_valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME and bool(_VALID.match(name))


def kubernetes_name(model_name: str) -> str:
    """A valid, stable `metadata.name` for an API model name (which keeps its own spelling in spec.name)."""
    if is_valid_name(model_name):
        return model_name
    base = model_name.strip().lower()
    for suffix in _MODEL_SUFFIXES:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    base = base.rsplit("/", 1)[-1] if base.count("/") > 1 else base
    base = re.sub(r"[^a-z0-9]+", "-", base).strip("-")
    if not base or not base[0].isalpha():
        base = f"m-{base}".rstrip("-")
    if len(base) > MAX_NAME:
        # Keep it unique among long names that share a prefix.
        digest = hashlib.sha256(model_name.encode()).hexdigest()[:8]
        base = f"{base[: MAX_NAME - 9].rstrip('-')}-{digest}"
    return base


def unique_name(name: str, taken: set[str]) -> str:
    """`name`, or `name-2`, `name-3`, … when it is already taken."""
    candidate, n = name, 2
    while candidate in taken:
        suffix = f"-{n}"
        candidate = f"{name[: MAX_NAME - len(suffix)]}{suffix}"
        n += 1
    taken.add(candidate)
    return candidate
