"""The one small interface every backend implements.

A backend owns a loaded model and turns a prompt into a stream of text pieces. Everything that is the
same for every backend — OpenAI protocol, templates, stop words across piece boundaries, queueing,
metrics — lives in the server, so a backend stays small and its library is imported only when the
backend is loaded (a pod installs just its own backend's extra).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from localmodel_runtime.errors import LocalModelException

from ..config import ModelConfig

FinishReason = Literal["stop", "length"]


class BackendError(LocalModelException):
    """Base of the errors a backend raises; the server maps them to OpenAI error bodies."""


class BackendUnavailable(BackendError):
    """The backend's library is not installed: the message says which `localmodel[extra]` brings it."""


class ModelLoadError(BackendError):
    """The model could not be loaded (missing file, wrong format, out of memory, …)."""


class InvalidRequest(BackendError):
    """The request cannot run on this model (e.g. the prompt is longer than the context)."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


class UnsupportedOperation(BackendError):
    """The backend or the loaded model cannot do this (e.g. embeddings from a generation-only model)."""


@dataclass(frozen=True)
class Capabilities:
    """What the loaded model can do; the server routes and admits requests by it."""

    completion: bool = True
    embeddings: bool = False
    rerank: bool = False
    """Whether `rerank()` scores documents against a query (`reranking: true` on a reranking model)."""
    tokenize: bool = True
    max_concurrency: int = 1
    """Sequences the backend runs together; further requests wait in the server's fair queue."""
    context_size: int = 0
    """Context window in tokens (0 when the backend cannot tell)."""
    structured_output: bool = False
    """Whether `SamplingParams.json_schema` (and `grammar`) can constrain what it generates."""
    vision: bool = False
    """Whether the prompt may carry images (`SamplingParams.images`; a llama model with `mmproj`)."""


@dataclass
class SamplingParams:
    """Sampling settings of one request, already merged over the model's `parameters` defaults."""

    max_tokens: int | None = None
    """New tokens at most; None means until the context is full."""
    temperature: float = 0.9
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.0
    typical_p: float = 1.0
    seed: int | None = None
    """None or -1: a random seed for this request; the same seed gives the same output."""
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    mirostat: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    grammar: str | None = None
    json_schema: dict[str, Any] | None = None
    """Constrain the output to JSON that matches this schema (tool calls, `response_format`)."""
    logit_bias: dict[int, float] = field(default_factory=dict)
    ignore_eos: bool = False
    stop: list[str] = field(default_factory=list)
    """Stop sequences; backends may stop early on them, the server always enforces them exactly."""
    images: list[bytes] = field(default_factory=list)
    """Encoded image files (PNG, JPEG, ...) that the prompt's media markers stand for, in order; only for
    a backend whose capabilities say `vision` (the server refuses images for the others)."""


@dataclass(frozen=True)
class TextPiece:
    """A piece of generated text (one or more tokens; may be empty while a UTF-8 character completes)."""

    text: str
    tokens: int = 1


@dataclass(frozen=True)
class Finished:
    """The last event of a generation."""

    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int


GenerationEvent = TextPiece | Finished


@dataclass(frozen=True)
class ModelInfo:
    """What the server needs to know about the loaded model besides capabilities."""

    chat_template: str | None = None
    """The model's own chat template (GGUF tokenizer.chat_template or tokenizer_config.json)."""
    bos_token: str = ""
    eos_token: str = ""


class Backend(abc.ABC):
    """A loaded model. Subclasses are registered in `localmodel_runtime.backends.registry`."""

    name: str = ""

    def __init__(self, config: ModelConfig, models_dir: Path) -> None:
        self.config = config
        self.models_dir = models_dir

    @abc.abstractmethod
    async def load(self) -> None:
        """Load the model (in a worker thread if it blocks); raise ModelLoadError on failure."""

    @abc.abstractmethod
    def capabilities(self) -> Capabilities: ...

    def model_info(self) -> ModelInfo:
        return ModelInfo()

    @abc.abstractmethod
    def tokenize(self, text: str) -> list[int]: ...

    @abc.abstractmethod
    def generate(self, prompt: str, params: SamplingParams) -> AsyncIterator[GenerationEvent]:
        """Stream text pieces, then one Finished. Closing the iterator early cancels the generation."""

    async def embed(self, texts: list[str]) -> list[list[float]]:
        raise UnsupportedOperation(f"backend {self.name} does not serve embeddings")

    async def rerank(self, query: str, documents: list[str]) -> tuple[list[float], int]:
        """A relevance score per document, in order (higher is more relevant), and the tokens read."""
        raise UnsupportedOperation(f"backend {self.name} does not rerank")

    def kv_cache_usage(self) -> float | None:
        """The share (0..1) of the KV cache that running generations hold, or None when the backend does
        not know it (the server then reports its busy slots instead: `vllm:kv_cache_usage_perc`)."""
        return None

    async def close(self) -> None:
        """Release the model; called once on shutdown."""
