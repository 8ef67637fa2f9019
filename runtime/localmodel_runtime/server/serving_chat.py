"""POST /v1/chat/completions: messages → the model's chat template → a generation."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..backends.base import SamplingParams
from ..templates import RenderError
from . import protocol
from .errors import APIError
from .framing import OpenAIChunks
from .images import request_images
from .serving import (
    ModelServer,
    choice_count,
    parse,
    read_body,
    respond,
    sampling_params,
)
from .streaming import DONE, sse, sse_response
from .tools import ToolPlan, json_output, parse_reply, plan_tools


class ChunkTemplate:
    """An SSE event for one streamed chunk, serialised once; per piece only the text is encoded.

    Every chunk of a stream has the same id, created time and model, so the bytes around the text are
    built once per stream; a streamed token then costs one orjson call on a short string.
    """

    def __init__(self, payload: dict[str, Any], path: tuple[str | int, ...]) -> None:
        marker = f"\x00{uuid.uuid4().hex}"
        node: Any = payload
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = marker
        encoded = b"data: " + orjson.dumps(payload) + b"\n\n"
        self.before, _, self.after = encoded.partition(orjson.dumps(marker))

    def __call__(self, text: str) -> bytes:
        return self.before + orjson.dumps(text) + self.after


class ChatFraming(OpenAIChunks):
    object = "chat.completion.chunk"
    id_prefix = "chatcmpl"

    def __init__(self, model: str, include_usage: bool) -> None:
        super().__init__(model, include_usage)
        self._templates: dict[int, ChunkTemplate] = {}

    def _content(self, content: Any) -> dict[str, Any]:
        return {"delta": content}

    def _nothing(self) -> Any:
        return {}

    def head(self, index: int = 0) -> bytes:
        return sse(self._chunk({"role": "assistant", "content": ""}, None, index))

    def piece(self, text: str, index: int = 0) -> bytes:
        template = self._templates.get(index)
        if template is None:
            chunk = self._chunk({"content": None}, None, index)
            template = self._templates[index] = ChunkTemplate(chunk, ("choices", 0, "delta", "content"))
        return template(text)

    def whole(self, choices: list[protocol.Choice], usage: dict[str, int]) -> dict[str, Any]:
        return protocol.chat_completion(self.id, self.created, self.model, choices, usage)


class ToolChatFraming(ChatFraming):
    """A chat answer that may call tools: each choice's reply is read back as content or tool calls."""

    def __init__(self, model: str, include_usage: bool, plan: ToolPlan) -> None:
        super().__init__(model, include_usage)
        self.plan = plan
        self.body: dict[str, Any] = {}
        """The whole answer, once `whole()` built it (a stream replays it)."""

    def whole(self, choices: list[protocol.Choice], usage: dict[str, int]) -> dict[str, Any]:
        body = protocol.chat_completion(self.id, self.created, self.model, choices, usage)
        for choice, (text, _) in zip(body["choices"], choices, strict=True):
            content, calls = parse_reply(self.plan, text)
            choice["message"]["content"] = content
            if calls:
                choice["message"]["tool_calls"] = calls
                choice["finish_reason"] = "tool_calls"
        self.body = body
        return body

    def replay(self) -> Response:
        """A whole answer sent as the chunks of a stream (tool calls are known only once complete)."""
        body, events = self.body, []
        for choice in body["choices"]:
            index, message = choice["index"], choice["message"]
            events.append(self.head(index))
            if message.get("content"):
                events.append(self.piece(message["content"], index))
            if message.get("tool_calls"):
                calls = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
                events.append(sse(self._chunk({"tool_calls": calls}, None, index)))
            events.append(self.tail(choice["finish_reason"], index))
        if self.include_usage:
            events.append(self.usage_chunk(body["usage"]))
        events.append(DONE)
        return sse_response(b"".join(events))


async def render_chat(
    server: ModelServer,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    tool_choice: Any,
    *,
    param: str = "messages",
    metadata: dict[str, str] | None = None,
    reasoning_effort: str | None = None,
) -> str:
    """The chat prompt, rendered off the event loop (a template over a long conversation takes a
    while); a template that fails is a 400 naming `param`. Chat, Responses and Messages share it."""
    try:
        return await asyncio.to_thread(
            functools.partial(
                server.renderer.chat,
                messages,
                tools=tools,
                tool_choice=tool_choice,
                metadata=metadata,
                reasoning_effort=reasoning_effort,
            )
        )
    except RenderError as exc:
        raise APIError(
            400, f"The {param} cannot be rendered with the model's chat template: {exc}", param=param
        ) from None


async def answer_with_tools(
    server: ModelServer,
    request: Request,
    plan: ToolPlan,
    *,
    params: SamplingParams,
    include_usage: bool = False,
    **common: Any,
) -> tuple[Response, ToolChatFraming]:
    """Generate a whole answer that may call tools, under `plan`'s schema unless the request brings a
    grammar of its own; never streamed, since tool calls are known only once complete. Returns the
    answer and its framing, whose `body` a caller replays as a stream or turns into its own API's shape
    (`common`: the rest of `respond`'s arguments). Chat, Responses and Messages share it."""
    if plan.constrained and not params.grammar:
        params.json_schema = plan.schema()
    framing = ToolChatFraming(server.name, include_usage, plan)
    response = await respond(
        server, request, params=params, framing=framing, stream=False, include_usage=False, **common
    )
    return response, framing


def _tools(req: protocol.ChatCompletionRequest) -> tuple[list[dict[str, Any]] | None, Any]:
    """`tools`/`tool_choice`, with the legacy `functions`/`function_call` turned into them."""
    tools = req.tools
    choice: Any = req.tool_choice
    if tools is None and req.functions:
        tools = [{"type": "function", "function": f} for f in req.functions]
    if choice is None and req.function_call is not None:
        call = req.function_call
        choice = {"type": "function", "function": call} if isinstance(call, dict) else call
    return tools, choice


async def create_chat_completion(server: ModelServer, request: Request) -> Response:
    arrival = time.perf_counter()
    body = await read_body(request, server.max_body_bytes)
    req = parse(protocol.ChatCompletionRequest, body)
    server.check_model(req.model)
    server.note_prompt(body)
    messages = [m.model_dump(exclude_none=True) for m in req.messages]
    images = await request_images(server.backend.capabilities().vision, messages)
    tools, tool_choice = _tools(req)
    prompt = await render_chat(
        server, messages, tools, tool_choice, metadata=req.metadata, reasoning_effort=req.reasoning_effort
    )
    params = sampling_params(server.config, req, req.max_completion_tokens or req.max_tokens)
    params.images = images
    include_usage = bool(req.stream and req.stream_options and req.stream_options.include_usage)
    structured = server.backend.capabilities().structured_output
    plan = plan_tools(server.config, tools, tool_choice, structured)
    if plan is not None:
        response, framing = await answer_with_tools(
            server,
            request,
            plan,
            include_usage=include_usage,
            prompts=[(prompt, server.renderer.reply_prefix)],
            params=params,
            prompt_param="messages",
            arrival=arrival,
            n=choice_count(server.config, req),
        )
        return framing.replay() if req.stream else response
    params.json_schema = json_output(req.response_format, structured)
    return await respond(
        server,
        request,
        prompts=[(prompt, server.renderer.reply_prefix)],
        params=params,
        framing=ChatFraming(server.name, include_usage),
        stream=req.stream,
        include_usage=include_usage,
        prompt_param="messages",
        arrival=arrival,
        n=choice_count(server.config, req),
    )
