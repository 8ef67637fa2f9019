"""POST /v1/completions (the `completion` template) and the legacy POST /v1/edits (the `edit` template)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from . import protocol
from .errors import APIError
from .framing import OpenAIChunks
from .serving import (
    MAX_CHOICES,
    ModelServer,
    choice_count,
    parse,
    read_body,
    respond,
    sampling_params,
)
from .serving_chat import ChunkTemplate
from .tools import json_output


class CompletionFraming(OpenAIChunks):
    object = "text_completion"
    id_prefix = "cmpl"

    def __init__(self, model: str, include_usage: bool) -> None:
        super().__init__(model, include_usage)
        self._text: dict[int, ChunkTemplate] = {}

    def _content(self, content: Any) -> dict[str, Any]:
        return {"text": content}

    def _nothing(self) -> Any:
        return ""

    def head(self, index: int = 0) -> None:
        return None

    def piece(self, text: str, index: int = 0) -> bytes:
        template = self._text.get(index)
        if template is None:
            template = self._text[index] = ChunkTemplate(
                self._chunk(None, None, index), ("choices", 0, "text")
            )
        return template(text)

    def whole(self, choices: list[protocol.Choice], usage: dict[str, int]) -> dict[str, Any]:
        return protocol.text_completion(self.id, self.created, self.model, choices, usage)


class EditFraming(CompletionFraming):
    def whole(self, choices: list[protocol.Choice], usage: dict[str, int]) -> dict[str, Any]:
        return protocol.edit(self.created, choices, usage)


def _prompt_texts(prompt: str | list[str] | list[int] | list[list[int]], n: int) -> list[str]:
    """The request's prompts: one string, or a batch of strings (each gets `n` choices)."""
    if isinstance(prompt, str):
        return [prompt]
    if not prompt:
        raise APIError(400, "prompt must not be an empty list.", param="prompt")
    if not all(isinstance(p, str) for p in prompt):
        raise APIError(400, "Token-id prompts are not supported: send the prompt as text.", param="prompt")
    if len(prompt) * n > MAX_CHOICES:
        raise APIError(
            400,
            f"{len(prompt)} prompts × n={n} is more than the {MAX_CHOICES} choices one request may ask for.",
            param="prompt",
        )
    return [str(p) for p in prompt]


async def create_completion(server: ModelServer, request: Request) -> Response:
    arrival = time.perf_counter()
    body = await read_body(request, server.max_body_bytes)
    req = parse(protocol.CompletionRequest, body)
    server.check_model(req.model)
    server.note_prompt(body)
    n = choice_count(server.config, req)
    texts = _prompt_texts(req.prompt, n)
    if req.best_of is not None and req.best_of > 1:
        raise APIError(400, "best_of > 1 is not supported.", param="best_of")
    if req.suffix:
        raise APIError(400, "suffix (insertion) is not supported by this server.", param="suffix")
    params = sampling_params(server.config, req, req.max_tokens)
    params.json_schema = json_output(req.response_format, server.backend.capabilities().structured_output)
    include_usage = bool(req.stream and req.stream_options and req.stream_options.include_usage)
    reply_prefix = server.renderer.reply_prefix
    rendered = await asyncio.to_thread(lambda: [server.renderer.completion(t) for t in texts])
    return await respond(
        server,
        request,
        prompts=[(r, (t if req.echo else "") + reply_prefix) for r, t in zip(rendered, texts, strict=True)],
        params=params,
        framing=CompletionFraming(server.name, include_usage),
        stream=req.stream,
        include_usage=include_usage,
        prompt_param="prompt",
        arrival=arrival,
        n=n,
    )


async def create_edit(server: ModelServer, request: Request) -> Response:
    arrival = time.perf_counter()
    req = parse(protocol.EditRequest, await read_body(request, server.max_body_bytes))
    server.check_model(req.model)
    if req.stream:
        raise APIError(400, "The edits endpoint does not stream.", param="stream")
    params = sampling_params(server.config, req, req.max_tokens)
    prompt = await asyncio.to_thread(server.renderer.edit, req.instruction, req.input)
    return await respond(
        server,
        request,
        prompts=[(prompt, server.renderer.reply_prefix)],
        params=params,
        framing=EditFraming(server.name, False),
        stream=False,
        include_usage=False,
        prompt_param="input",
        arrival=arrival,
        n=choice_count(server.config, req),
    )
