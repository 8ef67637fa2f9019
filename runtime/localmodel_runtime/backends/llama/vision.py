"""Images in prompts for the llama backend: the model's multimodal projector (`mmproj`) through llama.cpp's
mtmd library.

mtmd splits a prompt at its media markers (`<__media__>`, one per image) into text chunks and image
chunks; the projector turns an image into a run of embeddings that stand in the model's sequence where
tokens would. `Vision.prompt()` does the expensive part in the request's own thread, off the batch
engine's worker: it decodes the images, tokenizes the text around them and runs each image through the
projector, keeping a copy of its embeddings. The prompt becomes a token list in which the positions an
image takes hold `IMAGE` instead of token ids; when the engine's prompt reading reaches an image it
decodes those embeddings into the slot's sequence (`decode_image()`), between its own batches.

`llama_cpp.mtmd_cpp` is imported by `load()` only, like `llama_cpp` itself.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base import BackendError, InvalidRequest, ModelLoadError

log = logging.getLogger(__name__)

IMAGE = -1
"""In a prompt's token list: a position taken by an image's embeddings (never a token id)."""

_GGML_LOG_ERROR = 4
"""ggml's log level of errors (NONE, DEBUG, INFO, WARN, ERROR since ggml numbered DEBUG 1)."""


@dataclass(eq=False)
class EncodedImage:
    """One image of a prompt, through the projector: what the engine decodes into a sequence."""

    chunk: Any
    """The image's mtmd chunk (owned: freed with this object)."""
    embeddings: Any
    """`n_tokens` x the model's width floats (a ctypes array: mtmd overwrites its own buffer per image)."""
    n_tokens: int
    """Embeddings, i.e. KV cells it fills."""
    n_pos: int
    """Positions it takes (fewer than n_tokens for M-RoPE models such as Qwen2-VL)."""


@dataclass
class VisionPrompt:
    """A prompt with images: tokens with `IMAGE` placeholders, and each image by its first position."""

    tokens: list[int]
    images: dict[int, EncodedImage]
    extra_cells: int
    """KV cells the images fill beyond the positions they take (0 unless the model uses M-RoPE)."""


class Vision:
    """An mtmd context over the loaded text model."""

    def __init__(self, mtmd: Any, ctx: Any, n_embd: int, marker: str) -> None:
        self._mtmd = mtmd
        self._ctx = ctx
        self._n_embd = n_embd
        self.marker = marker
        """The text that stands for one image in a prompt."""
        # One mtmd context encodes one image at a time (it keeps its output in one buffer).
        self._lock = threading.Lock()
        self._no_callback = mtmd.mtmd_helper_post_decode_callback()

    @classmethod
    def load(cls, lib: Any, model: Any, path: Path, *, n_threads: int, use_gpu: bool) -> Vision:
        """The projector at `path` over `model`; ModelLoadError when it is missing, not a projector, or
        made for another model (its output width differs from the model's)."""
        import llama_cpp.mtmd_cpp as mtmd

        if not path.is_file():
            raise ModelLoadError(f"mmproj: the projector file {path} does not exist")
        errors = _capture_errors(lib, mtmd)
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = use_gpu
        params.print_timings = False
        params.n_threads = n_threads
        ctx = mtmd.mtmd_init_from_file(str(path).encode(), model, params)
        _capture_errors.active = None
        if not ctx:
            reason = " ".join(" ".join(errors).split()) or "see llama.cpp's log"
            raise ModelLoadError(
                f"mmproj: llama.cpp could not load {path} as this model's projector: {reason}"
            )
        if not mtmd.mtmd_support_vision(ctx):
            mtmd.mtmd_free(ctx)
            raise ModelLoadError(f"mmproj: {path} has no vision encoder (only images are served)")
        n_embd = int(lib.llama_model_n_embd_inp(model))
        marker = (mtmd.mtmd_get_marker(ctx) or mtmd.mtmd_default_marker()).decode()
        return cls(mtmd, ctx, n_embd, marker)

    def prompt(self, text: str, images: list[bytes]) -> VisionPrompt:
        """Tokenize `text` around its image markers and run every image through the projector (blocks:
        call it in a worker thread). InvalidRequest for an image that cannot be read or a marker count
        that differs from the images'."""
        mtmd = self._mtmd
        if text.count(self.marker) != len(images):
            raise InvalidRequest(
                f"The prompt has {text.count(self.marker)} image markers ({self.marker}) for the "
                f"{len(images)} image(s) of the request: the chat template must keep one per image.",
                param="prompt",
            )
        with self._lock:
            bitmaps = [self._bitmap(data, i) for i, data in enumerate(images)]
            chunks = mtmd.mtmd_input_chunks_init()
            try:
                encoded = text.encode("utf-8")
                inp = mtmd.mtmd_input_text()
                inp.text = encoded
                inp.text_len = len(encoded)
                inp.add_special = True
                inp.parse_special = True
                array = (mtmd.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
                status = mtmd.mtmd_tokenize(self._ctx, chunks, ctypes.byref(inp), array, len(bitmaps))
                if status != 0:
                    raise InvalidRequest("An image could not be prepared for the model.", param="messages")
                return self._read_chunks(chunks)
            finally:
                mtmd.mtmd_input_chunks_free(chunks)
                for bitmap in bitmaps:
                    mtmd.mtmd_bitmap_free(bitmap)

    def _bitmap(self, data: bytes, index: int) -> Any:
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        bitmap = self._mtmd.mtmd_helper_bitmap_init_from_buf(self._ctx, buf, len(data), False)
        if not bitmap or self._mtmd.mtmd_bitmap_is_audio(bitmap):
            if bitmap:
                self._mtmd.mtmd_bitmap_free(bitmap)
            raise InvalidRequest(f"Image {index + 1} of the request could not be decoded.", param="messages")
        return bitmap

    def _read_chunks(self, chunks: Any) -> VisionPrompt:
        mtmd = self._mtmd
        tokens: list[int] = []
        images: dict[int, EncodedImage] = {}
        extra = 0
        n_chunks = mtmd.mtmd_input_chunks_size(chunks)
        for i in range(n_chunks):
            chunk = mtmd.mtmd_input_chunks_get(chunks, i)
            kind = mtmd.mtmd_input_chunk_get_type(chunk)
            if kind == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                count = ctypes.c_size_t(0)
                ids = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
                tokens.extend(ids[: count.value])
                continue
            if kind != mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                raise InvalidRequest("Only images are served as media here.", param="messages")
            image = self._encode(chunk)
            images[len(tokens)] = image
            tokens.extend([IMAGE] * image.n_pos)
            extra += image.n_tokens - image.n_pos
        if not tokens or tokens[-1] == IMAGE:
            # The engine samples the first new token from the last prompt token's logits.
            raise InvalidRequest("The prompt must end with text after its last image.", param="prompt")
        return VisionPrompt(tokens, images, extra)

    def _encode(self, chunk: Any) -> EncodedImage:
        mtmd = self._mtmd
        if mtmd.mtmd_encode_chunk(self._ctx, chunk) != 0:
            raise BackendError("the multimodal projector failed to encode an image")
        n_tokens = int(mtmd.mtmd_input_chunk_get_n_tokens(chunk))
        size = n_tokens * self._n_embd
        embeddings = (ctypes.c_float * size)()
        ctypes.memmove(embeddings, mtmd.mtmd_get_output_embd(self._ctx), size * ctypes.sizeof(ctypes.c_float))
        owned = mtmd.mtmd_input_chunk_copy(chunk)
        image = EncodedImage(owned, embeddings, n_tokens, int(mtmd.mtmd_input_chunk_get_n_pos(chunk)))
        weakref.finalize(image, mtmd.mtmd_input_chunk_free, owned)
        return image

    def decode_image(self, lctx: Any, image: EncodedImage, n_past: int, seq_id: int, n_batch: int) -> None:
        """Decode an image's embeddings into sequence `seq_id` from position `n_past` (the engine's worker,
        which owns `lctx`, calls it between its batches)."""
        new_n_past = ctypes.c_int32(0)
        status = self._mtmd.mtmd_helper_decode_image_chunk(
            self._ctx,
            lctx,
            image.chunk,
            image.embeddings,
            n_past,
            seq_id,
            n_batch,
            ctypes.byref(new_n_past),
            self._no_callback,
            None,
        )
        if status != 0:
            raise BackendError(f"llama.cpp could not decode an image into the sequence (status {status})")

    def close(self) -> None:
        if self._ctx:
            self._mtmd.mtmd_free(self._ctx)
            self._ctx = None


class _ErrorCapture:
    """mtmd's log, routed like llama.cpp's (printed only when llama-cpp-python's logger allows) and with
    the error lines of a load kept, so that a refused projector's reason reaches ModelLoadError."""

    def __init__(self) -> None:
        self.active: list[str] | None = None
        self.callback: Any = None

    def __call__(self, lib: Any, mtmd: Any) -> list[str]:
        if self.callback is None:
            from llama_cpp import _logger

            def forward(level: int, text: bytes, user_data: Any) -> None:
                if level == _GGML_LOG_ERROR and self.active is not None:
                    self.active.append(text.decode("utf-8", errors="replace"))
                _logger.llama_log_callback(level, text, user_data)

            self.callback = lib.llama_log_callback(forward)  # kept: the C side holds the pointer
            mtmd.mtmd_log_set(self.callback, None)
            mtmd.mtmd_helper_log_set(self.callback, None)
        self.active = []
        return self.active


_capture_errors = _ErrorCapture()
