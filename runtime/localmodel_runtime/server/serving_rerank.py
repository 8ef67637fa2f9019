"""POST /v1/rerank (and /rerank): LocalAI's Jina-shaped reranking — a query and documents in, the
documents' relevance scores out, most relevant first, cut to `top_n`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..backends.base import BackendError
from . import protocol
from .errors import APIError, from_backend
from .serving import ModelServer, parse, read_body
from .streaming import json_response, until_disconnected


async def create_rerank(server: ModelServer, request: Request) -> Response:
    req = parse(protocol.RerankRequest, await read_body(request, server.max_body_bytes))
    server.check_model(req.model)
    if not req.documents:
        raise APIError(400, "documents must not be empty.", param="documents")
    texts = [d if isinstance(d, str) else d.text for d in req.documents]
    if not server.backend.capabilities().rerank:
        raise APIError(
            400,
            f"The model `{server.name}` does not rerank "
            "(it must be a reranking model with `reranking: true` in its configuration).",
            param="model",
            code="unsupported_operation",
        )

    async def rerank() -> tuple[list[float], int]:
        # Reranking shares the generation slots: past the queue's bound it gets 429 like the rest.
        ticket = await server.admission.acquire()
        try:
            return await server.backend.rerank(req.query, texts)
        finally:
            ticket.release()

    try:
        scores, tokens = await until_disconnected(request.receive, rerank())
    except BackendError as exc:
        raise from_backend(exc, prompt_param="documents") from None
    order = sorted(range(len(texts)), key=lambda i: scores[i], reverse=True)[: req.top_n or len(texts)]
    results: list[dict[str, Any]] = []
    for i in order:
        result: dict[str, Any] = {"index": i}
        if req.return_documents:
            result["document"] = {"text": texts[i]}
        result["relevance_score"] = scores[i]
        results.append(result)
    return json_response(protocol.rerank(server.name, results, tokens))
