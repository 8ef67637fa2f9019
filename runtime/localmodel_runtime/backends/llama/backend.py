"""Backend `llama`: GGUF models through llama-cpp-python's low-level API, several sequences at a time.

`load()` maps every llama.cpp key of the LocalAI model YAML onto llama.cpp's model and context
parameters, then hands the context to a `BatchEngine` (batch.py) that runs up to `parallel`
requests together. Embeddings (`embeddings: true`) use a second, small context in embedding mode. With
`mmproj` the model also reads images (vision.py).
`llama_cpp` is imported only in `load()`, so pods of other backends never need it.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ...config import ModelConfig
from ..base import (
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
)
from .batch import BatchEngine
from .ggml import GGML_MAGICS, legacy_ggml_message
from .lora import LoraAdapters
from .params import batch_size, context_length, context_params, model_params, parallel_sequences
from .pooled import PooledContexts
from .sampling import build_sampler
from .spec import DEFAULT_N_DRAFT, Drafter, check_same_vocabulary
from .vision import IMAGE, Vision, VisionPrompt

log = logging.getLogger(__name__)


class LlamaBackend(Backend):
    """llama.cpp on GGUF files; batches up to `parallel` sequences (LocalAI's `options: [parallel:N]`)."""

    name = "llama"

    def __init__(self, config: ModelConfig, models_dir: Path) -> None:
        super().__init__(config, models_dir)
        self._lib: Any = None
        self._model: Any = None
        self._vocab: Any = None
        self._ctx: Any = None
        self._pooled: PooledContexts | None = None
        self._lora: LoraAdapters | None = None
        self._draft_model: Any = None
        self._mparams: Any = None
        self._draft_ctx: Any = None
        self._drafter: Drafter | None = None
        self._vision: Vision | None = None
        self._engine: BatchEngine | None = None
        self._keepalive: list[Any] = []
        """ctypes arrays the C side points to (tensor_split) must outlive the model."""
        self._n_ctx_seq = 0
        self._n_vocab = 0
        self._eog: list[int] = []
        self._info = ModelInfo()

    # -- loading ---------------------------------------------------------------------------------

    def model_path(self) -> Path:
        model = self.config.model_file
        if not model:
            raise ModelLoadError("parameters.model is not set: name the GGUF file in the models directory")
        return self.models_dir / model

    async def load(self) -> None:
        try:
            import llama_cpp
        except ImportError:
            raise BackendUnavailable("backend llama needs the `localmodel[llama-cpp]` extra") from None
        self._lib = llama_cpp
        path = self.model_path()
        _check_model_file(path)
        await asyncio.to_thread(self._load_sync, path)

    def _load_sync(self, path: Path) -> None:
        lib, cfg = self._lib, self.config
        logging.getLogger("llama-cpp-python").setLevel(logging.DEBUG if cfg.debug else logging.ERROR)
        lib.llama_backend_init()

        mparams = model_params(lib, cfg, self._keepalive)
        self._mparams = mparams
        model = lib.llama_model_load_from_file(str(path).encode(), mparams)
        if not model:
            raise ModelLoadError(
                f"llama.cpp could not load {path}: not a GGUF model it supports, or truncated "
                "(set `debug: true` to see llama.cpp's log)"
            )
        self._model = model
        try:
            self._finish_load(path)
        except BaseException:
            self._free()
            raise

    def _finish_load(self, path: Path) -> None:
        lib, cfg, model = self._lib, self.config, self._model
        self._vocab = lib.llama_model_get_vocab(model)
        self._n_vocab = lib.llama_vocab_n_tokens(self._vocab)
        self._eog = [t for t in range(self._n_vocab) if lib.llama_vocab_is_eog(self._vocab, t)]
        n_ctx = context_length(cfg, int(lib.llama_model_n_ctx_train(model)))
        parallel = parallel_sequences(cfg)
        n_batch = batch_size(cfg)

        cparams = self._context_params(n_ctx * parallel, n_batch)
        cparams.n_seq_max = parallel
        # One KV stream per sequence: each request gets the whole context_size, and attention only
        # looks at its own stream.
        cparams.kv_unified = False
        ctx = lib.llama_init_from_model(model, cparams)
        if not ctx:
            raise ModelLoadError(
                f"llama.cpp could not create a context of {n_ctx} tokens x {parallel} sequences for {path} "
                "(out of memory, or an unsupported cache_type_k/cache_type_v / flash_attention combination)"
            )
        self._ctx = ctx
        self._n_ctx_seq = int(lib.llama_n_ctx_seq(ctx)) if hasattr(lib, "llama_n_ctx_seq") else n_ctx
        self._lora = LoraAdapters.load(lib, model, cfg, self.models_dir)
        self._lora.apply(ctx)
        self._pooled = PooledContexts(lib, model, self._vocab, self._tokenize)
        if cfg.reranking:
            self._pooled.check_reranker(self._meta, path.name)
        self._pooled.open(
            lambda: self._context_params(n_ctx, n_ctx),
            embeddings=bool(cfg.embeddings),
            reranking=bool(cfg.reranking),
            lora=self._lora,
        )
        if cfg.draft_model:
            self._drafter = self._load_draft(n_ctx, parallel, int(lib.llama_n_batch(ctx)))
        if cfg.mmproj_file:
            use_gpu = bool(self._mparams.n_gpu_layers) and bool(lib.llama_supports_gpu_offload())
            self._vision = Vision.load(
                lib, model, self.models_dir / cfg.mmproj_file, n_threads=cparams.n_threads, use_gpu=use_gpu
            )
        self._engine = BatchEngine(
            lib,
            model=model,
            ctx=ctx,
            vocab=self._vocab,
            n_parallel=parallel,
            n_ctx_seq=self._n_ctx_seq,
            n_batch=int(lib.llama_n_batch(ctx)),
            prompt_cache=cfg.prompt_cache_all is not False,
            eog_tokens=self._eog,
            cache_file=self.models_dir / cfg.prompt_cache_path if cfg.prompt_cache_path else None,
            drafter=self._drafter,
            vision=self._vision,
        )
        self._info = ModelInfo(
            chat_template=self._meta("tokenizer.chat_template"),
            bos_token=self._token_text(lib.llama_vocab_bos(self._vocab)),
            eos_token=self._token_text(lib.llama_vocab_eos(self._vocab)),
        )
        log.info(
            "loaded %s: context %d per sequence, %d sequences, batch %d, %d threads",
            path.name,
            self._n_ctx_seq,
            parallel,
            n_batch,
            cparams.n_threads,
        )

    def _context_params(self, n_ctx: int, n_batch: int) -> Any:
        return context_params(self._lib, self.config, n_ctx, n_batch)

    def _load_draft(self, n_ctx: int, parallel: int, n_batch: int) -> Drafter:
        lib, cfg = self._lib, self.config
        assert cfg.draft_model
        path = self.models_dir / cfg.draft_model
        _check_model_file(path, "draft_model")
        self._draft_model = lib.llama_model_load_from_file(str(path).encode(), self._mparams)
        if not self._draft_model:
            raise ModelLoadError(f"draft_model: llama.cpp could not load {path}")
        draft_vocab = lib.llama_model_get_vocab(self._draft_model)
        check_same_vocabulary(lib, self._vocab, draft_vocab, cfg.draft_model)
        cparams = self._context_params(n_ctx * parallel, n_batch)
        cparams.n_seq_max = parallel
        cparams.kv_unified = False
        self._draft_ctx = lib.llama_init_from_model(self._draft_model, cparams)
        if not self._draft_ctx:
            raise ModelLoadError(f"draft_model: llama.cpp could not create a context for {path}")
        # The main model checks every slot's guesses in one decode, which must fit its batch with room
        # left for reading new prompts.
        n_draft = max(1, min(cfg.n_draft or DEFAULT_N_DRAFT, n_batch // (2 * parallel) - 1))
        log.info("speculative decoding with %s, up to %d draft tokens per step", path.name, n_draft)
        ctx = self._draft_ctx
        return Drafter(lib, ctx, draft_vocab, n_parallel=parallel, n_batch=n_batch, n_draft=n_draft)

    @property
    def draft_stats(self) -> Any:
        """Guesses drafted and accepted so far (None without a draft model); the bench reads it."""
        return self._drafter.stats if self._drafter is not None else None

    def _meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1 << 16)
        size = self._lib.llama_model_meta_val_str(self._model, key.encode(), buf, len(buf))
        if size < 0:
            return None
        if size >= len(buf):
            buf = ctypes.create_string_buffer(size + 1)
            self._lib.llama_model_meta_val_str(self._model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", errors="replace")

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        text = self._lib.llama_vocab_get_text(self._vocab, token)
        return text.decode("utf-8", errors="replace") if text else ""

    # -- serving ---------------------------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        engine = self._engine
        return Capabilities(
            completion=True,
            embeddings=self._pooled is not None and self._pooled.embed_ctx is not None,
            rerank=self._pooled is not None and self._pooled.rerank_ctx is not None,
            tokenize=True,
            max_concurrency=engine.n_parallel if engine else 1,
            context_size=self._n_ctx_seq,
            structured_output=True,
            vision=self._vision is not None,
        )

    def model_info(self) -> ModelInfo:
        return self._info

    def tokenize(self, text: str) -> list[int]:
        return self._tokenize(text, True)

    def _tokenize(self, text: str, add_special: bool) -> list[int]:
        self._require_loaded()
        data = text.encode("utf-8")
        capacity = len(data) + 8
        tokens = (self._lib.llama_token * capacity)()
        n = self._lib.llama_tokenize(self._vocab, data, len(data), tokens, capacity, add_special, True)
        if n < 0:
            capacity = -n
            tokens = (self._lib.llama_token * capacity)()
            n = self._lib.llama_tokenize(self._vocab, data, len(data), tokens, capacity, add_special, True)
        return list(tokens[:n])

    async def generate(self, prompt: str, params: SamplingParams) -> AsyncIterator[GenerationEvent]:
        engine = self._require_loaded()
        # Tokenizing (and below, parsing a grammar) takes a while for a large input: off the event loop,
        # so that other streams and the health probes go on meanwhile.
        vision: VisionPrompt | None = None
        if params.images:
            if self._vision is None:
                raise InvalidRequest(
                    "This model does not accept images (it has no `mmproj`).", param="messages"
                )
            vision = await asyncio.to_thread(self._vision.prompt, prompt, params.images)
            tokens = vision.tokens
        else:
            tokens = await asyncio.to_thread(self.tokenize, prompt)
        if not tokens:
            raise InvalidRequest("the prompt is empty", param="prompt")
        cells = len(tokens) + (vision.extra_cells if vision else 0)
        if cells >= self._n_ctx_seq:
            raise InvalidRequest(
                f"This model's maximum context length is {self._n_ctx_seq} tokens, but the prompt has "
                f"{cells} tokens (at least one token must be left to generate).",
                param="prompt",
                code="context_length_exceeded",
            )

        def prepare() -> Any:
            grammar = params.grammar or _schema_grammar(params.json_schema) or self.config.grammar
            return build_sampler(
                self._lib,
                vocab=self._vocab,
                n_vocab=self._n_vocab,
                n_ctx=self._n_ctx_seq,
                params=params,
                grammar=grammar,
                prompt=[t for t in tokens if t != IMAGE],  # penalties look at the text only
                eog_tokens=self._eog,
            )

        preparing = asyncio.ensure_future(asyncio.to_thread(prepare))
        try:
            sampler = await asyncio.shield(preparing)
        except asyncio.CancelledError:
            # The client left while the sampler was being built: free it once it is there.
            preparing.add_done_callback(self._free_prepared_sampler)
            raise
        request = engine.submit(tokens, params, sampler, vision)
        try:
            while True:
                event = await request.queue.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, Finished):
                    return
        finally:
            # Client gone, stop word found, or an error: the worker drops the sequence before its next
            # decode step (a no-op when it already finished).
            request.cancel()
            engine.wake()

    def kv_cache_usage(self) -> float | None:
        return self._engine.kv_cache_usage() if self._engine is not None else None

    def _free_prepared_sampler(self, done: asyncio.Future[Any]) -> None:
        if not done.cancelled() and done.exception() is None:
            self._lib.llama_sampler_free(done.result())

    async def embed(self, texts: list[str]) -> list[list[float]]:
        self._require_loaded()
        assert self._pooled is not None
        return await self._pooled.embed(texts)

    async def rerank(self, query: str, documents: list[str]) -> tuple[list[float], int]:
        self._require_loaded()
        assert self._pooled is not None
        return await self._pooled.rerank(query, documents)

    async def close(self) -> None:
        await asyncio.to_thread(self._free)

    def _free(self) -> None:
        lib = self._lib
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        if self._pooled is not None:
            self._pooled.close()
            self._pooled = None
        if self._ctx:
            lib.llama_free(self._ctx)
            self._ctx = None
        if self._drafter is not None:
            self._drafter.close()
            self._drafter = None
        if self._draft_ctx:
            lib.llama_free(self._draft_ctx)
            self._draft_ctx = None
        if self._draft_model:
            lib.llama_model_free(self._draft_model)
            self._draft_model = None
        if self._vision is not None:
            self._vision.close()
            self._vision = None
        if self._lora is not None:
            self._lora.free()
            self._lora = None
        if self._model:
            lib.llama_model_free(self._model)
            self._model = None

    def _require_loaded(self) -> BatchEngine:
        if self._engine is None:
            raise BackendError("the model is not loaded")
        return self._engine

    @property
    def engine(self) -> BatchEngine | None:
        """The batch engine (tests and the bench look at it)."""
        return self._engine


def _check_model_file(path: Path, key: str = "parameters.model") -> None:
    if not path.is_file():
        raise ModelLoadError(f"model file {path} does not exist (is `{key}` right?)")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic in GGML_MAGICS:
        raise ModelLoadError(legacy_ggml_message(path))
    if magic != b"GGUF":
        raise ModelLoadError(f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF')")


def _schema_grammar(schema: dict[str, Any] | None) -> str | None:
    """A JSON schema as the GBNF grammar llama.cpp samples under (llama-cpp-python's converter)."""
    if schema is None:
        return None
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        return str(json_schema_to_gbnf(json.dumps(schema)))
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise InvalidRequest(f"the JSON schema cannot be turned into a grammar: {exc}") from None
