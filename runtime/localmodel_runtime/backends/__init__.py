"""Backends: one small interface (base.py) and the classes behind it, imported lazily (registry.py)."""

from .base import (
    Backend,
    BackendError,
    BackendUnavailable,
    Capabilities,
    Finished,
    GenerationEvent,
    InvalidRequest,
    ModelInfo,
    ModelLoadError,
    SamplingParams,
    TextPiece,
    UnsupportedOperation,
)
from .registry import BACKENDS, backend_class, backend_name, create_backend, load_backend

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendError",
    "BackendUnavailable",
    "Capabilities",
    "Finished",
    "GenerationEvent",
    "InvalidRequest",
    "ModelInfo",
    "ModelLoadError",
    "SamplingParams",
    "TextPiece",
    "UnsupportedOperation",
    "backend_class",
    "backend_name",
    "create_backend",
    "load_backend",
]
