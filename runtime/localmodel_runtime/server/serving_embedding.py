"""POST /v1/embeddings: a string or a list of strings → one vector each (float lists or base64)."""

from __future__ import annotations

import asyncio
import base64
import struct

from starlette.requests import Request
from starlette.responses import Response

from ..backends.base import BackendError
from . import protocol
from .errors import APIError, from_backend
from .serving import ModelServer, parse, read_body
from .streaming import json_response, until_disconnected


def _texts(value: str | list[str] | list[int] | list[list[int]]) -> list[str]:
    if isinstance(value, str):
        return [value]
    if all(isinstance(v, str) for v in value):
        if not value:
            raise APIError(400, "input must not be empty.", param="input")
        return [str(v) for v in value]
    raise APIError(400, "Token-id inputs are not supported: send the input as text.", param="input")


def _base64(vector: list[float]) -> str:
    # OpenAI's base64 format: the little-endian float32 array, base64-encoded.
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


async def create_embedding(server: ModelServer, request: Request) -> Response:
    req = parse(protocol.EmbeddingRequest, await read_body(request, server.max_body_bytes))
    server.check_model(req.model)
    texts = _texts(req.input)
    if req.dimensions is not None:
        raise APIError(400, "dimensions is not supported: vectors have the model's size.", param="dimensions")
    if not server.backend.capabilities().embeddings:
        raise APIError(
            400,
            f"The model `{server.name}` does not serve embeddings "
            "(set `embeddings: true` in its configuration).",
            param="model",
            code="unsupported_operation",
        )

    async def embed() -> tuple[list[list[float]], int]:
        # Embeddings share the generation slots: past the queue's bound they get 429 like the rest.
        ticket = await server.admission.acquire()
        try:
            vectors = await server.backend.embed(texts)
        finally:
            ticket.release()
        if not server.backend.capabilities().tokenize:
            return vectors, 0
        # Counting tokens of a large input takes a while: not on the event loop.
        counts = await asyncio.to_thread(lambda: [len(server.backend.tokenize(t)) for t in texts])
        return vectors, sum(counts)

    try:
        vectors, tokens = await until_disconnected(request.receive, embed())
    except BackendError as exc:
        raise from_backend(exc, prompt_param="input") from None
    data: list[list[float]] | list[str] = (
        [_base64(v) for v in vectors] if req.encoding_format == "base64" else vectors
    )
    return json_response(protocol.embeddings(server.name, data, tokens))
