"""Which class serves which backend, imported only when a model asks for it.

A runtime image installs one backend's extra, so importing every backend at start-up would fail in
every pod. The table names classes as "module:Class" strings; `create_backend` imports the one the
config names and turns a missing library into `BackendUnavailable` with the extra to install (the
operator recognises that message in the pod's termination log and reports `MissingBackend`).
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Final

from ..config import BACKEND_EXTRAS, ModelConfig, ModelConfigError, canonical_backend, guess_backend
from .base import Backend, BackendUnavailable

BACKENDS: Final[dict[str, str]] = {
    "llama": "localmodel_runtime.backends.llama.backend:LlamaBackend",
    "llama-ggml": "localmodel_runtime.backends.llama.ggml:LlamaGgmlBackend",
    "transformers": "localmodel_runtime.backends.transformers_backend:TransformersBackend",
    "vllm": "localmodel_runtime.backends.vllm_backend:VLLMBackend",
    "autogptq": "localmodel_runtime.backends.autogptq_backend:AutoGPTQBackend",
    "exllama": "localmodel_runtime.backends.exllama_backend:ExLlamaV2Backend",
    "exllama2": "localmodel_runtime.backends.exllama_backend:ExLlamaV2Backend",
    "rwkv": "localmodel_runtime.backends.rwkv_backend:RWKVBackend",
}
"""Canonical backend name → "module:Class"."""

LIBRARIES: Final[dict[str, tuple[str, ...]]] = {
    "llama": ("llama_cpp",),
    "llama-ggml": (),
    "transformers": ("transformers", "torch"),
    "vllm": ("vllm",),
    "autogptq": ("gptqmodel", "transformers", "torch"),
    "exllama": ("exllamav2",),
    "exllama2": ("exllamav2",),
    "rwkv": ("rwkv",),
}
"""Top-level modules each backend's extra installs: checked before anything is imported or bound."""


def missing_extra_message(backend: str) -> str:
    extra = BACKEND_EXTRAS.get(backend, backend)
    return f"backend {backend} needs the `localmodel[{extra}]` extra (pip install 'localmodel[{extra}]')"


def backend_name(config: ModelConfig) -> str:
    """The canonical backend that serves `config`: its `backend`, or a guess from the model file.

    An unknown name is a configuration problem (ModelConfigError), not a missing library.
    """
    if config.backend:
        name = canonical_backend(config.backend)
        if name is None:
            known = ", ".join(sorted(BACKENDS))
            raise ModelConfigError(
                "backend", [f"{config.backend!r} is not a backend localmodel serves (known: {known})"]
            )
        return name
    guessed = guess_backend(config.model_file)
    if guessed is None:
        raise ModelConfigError(
            "backend",
            [
                f"not set, and none can be guessed from parameters.model {config.model_file!r}; "
                "set `backend:` (e.g. llama for GGUF files)"
            ],
        )
    return guessed


def missing_libraries(name: str) -> list[str]:
    """The libraries of backend `name` that are not installed (found without importing them)."""
    return [lib for lib in LIBRARIES.get(name, ()) if importlib.util.find_spec(lib) is None]


def backend_class(name: str) -> type[Backend]:
    """Import the class serving the canonical backend `name`."""
    target = BACKENDS.get(name)
    if target is None:
        raise ModelConfigError("backend", [f"{name!r} is not a backend localmodel serves"])
    if missing_libraries(name):
        raise BackendUnavailable(missing_extra_message(name))
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        # The backend module imports its library at the top, or the module is not in this image.
        raise BackendUnavailable(missing_extra_message(name)) from exc
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise BackendUnavailable(f"{target} is not a Backend class; this localmodel build is broken")
    return cls


def create_backend(config: ModelConfig, models_dir: Path) -> Backend:
    """The (not yet loaded) backend for `config`; raises BackendUnavailable or ModelConfigError."""
    return backend_class(backend_name(config))(config, models_dir)


async def load_backend(backend: Backend) -> None:
    """`backend.load()`, with an ImportError of a library imported lazily turned into the extra hint."""
    name = backend.name or backend_name(backend.config)
    try:
        await backend.load()
    except ImportError as exc:
        raise BackendUnavailable(missing_extra_message(canonical_backend(name) or name)) from exc


def unavailable(backend: str, extra: str | None = None, purpose: str = "") -> BackendUnavailable:
    """The error for a missing library: names the `localmodel[extra]` that brings it (the operator
    reads this message from the pod and reports `MissingBackend`)."""
    extra = extra or BACKEND_EXTRAS.get(backend, backend)
    purpose = f" for {purpose}" if purpose else ""
    return BackendUnavailable(
        f"backend {backend} needs the `localmodel[{extra}]` extra{purpose} "
        f"(pip install 'localmodel[{extra}]')"
    )
