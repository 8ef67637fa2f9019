"""POST /v1/messages: Anthropic's Messages API (Claude Code, the `anthropic` SDK) over the same chat
template, generation, admission and tool calling as /v1/chat/completions; answers, stream events and
errors in Anthropic's shapes.

The request becomes chat messages (system first; `tool_use` blocks become assistant tool calls and
`tool_result` blocks tool messages); the answer's text and tool calls become `text` and `tool_use`
blocks. A stream of a plain answer is sent as it is generated; an answer that may call tools is known
only once complete, so it is generated whole and then sent as the events of a stream.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..anthropic_errors import anthropic_error, from_openai_error
from . import protocol
from .errors import APIError
from .images import image_part, request_images
from .protocol_messages import STOP_REASONS, Block, MessagesRequest, message
from .serving import ModelServer, parse, read_body, respond, sampling_params
from .serving_chat import answer_with_tools, render_chat
from .streaming import json_response, sse_response
from .tools import plan_tools


def event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _text_of(content: Any, where: str) -> str:
    """The text of a `tool_result`'s or `system`'s content: a string, or text blocks."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        return "\n".join(
            str(b.get("text") or "") for b in content if isinstance(b, dict) and b.get("type") == "text"
        )
    raise APIError(400, f"{where}: content must be a string or a list of blocks.", param=where)


def _block_field(block: Block, key: str, where: str) -> Any:
    value = block.get(key)
    if value is None:
        raise APIError(400, f"{where}.{key}: Field required", param=f"{where}.{key}")
    return value


def chat_messages(req: MessagesRequest) -> list[dict[str, Any]]:
    """The request's conversation as the chat messages the model's template renders."""
    messages: list[dict[str, Any]] = []
    system = _text_of(req.system, "system")
    if system:
        messages.append({"role": "system", "content": system})
    for i, turn in enumerate(req.messages):
        if isinstance(turn.content, str):
            messages.append({"role": turn.role, "content": turn.content})
            continue
        texts: list[str] = []
        parts: list[dict[str, Any]] = []
        calls: list[dict[str, Any]] = []
        for j, block in enumerate(turn.content):
            where = f"messages.{i}.content.{j}"
            kind = block.get("type")
            if kind == "text":
                texts.append(str(block.get("text") or ""))
                parts.append({"type": "text", "text": texts[-1]})
            elif kind == "image" and turn.role == "user":
                parts.append(image_part(_image_url(block, where)))
            elif kind == "tool_use" and turn.role == "assistant":
                arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
                function = {"name": str(_block_field(block, "name", where)), "arguments": arguments}
                calls.append(
                    {"id": str(_block_field(block, "id", where)), "type": "function", "function": function}
                )
            elif kind == "tool_result" and turn.role == "user":
                content = _text_of(block.get("content"), f"{where}.content")
                if block.get("is_error"):
                    content = f"Error: {content}"
                call_id = str(_block_field(block, "tool_use_id", where))
                messages.append({"role": "tool", "tool_call_id": call_id, "content": content})
            elif kind in ("document", "thinking", "redacted_thinking"):
                raise APIError(400, f"{where}: {kind} blocks are not supported by this model.", param=where)
            else:
                raise APIError(
                    400, f"{where}: unsupported content block type {kind!r}.", param=f"{where}.type"
                )
        if texts or calls or parts:
            text_or_parts = parts if len(parts) > len(texts) else "\n".join(texts)
            chat: dict[str, Any] = {"role": turn.role, "content": text_or_parts}
            if calls:
                chat["tool_calls"] = calls
            messages.append(chat)
    return messages


def _image_url(block: Block, where: str) -> str:
    """An image block's source as a URL: a `base64` source as a data: URL, a `url` source as it is."""
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64" and isinstance(source, dict):
        media_type = str(source.get("media_type") or "image/png")
        return f"data:{media_type};base64,{_block_field(source, 'data', f'{where}.source')}"
    if kind == "url" and isinstance(source, dict):
        return str(_block_field(source, "url", f"{where}.source"))
    raise APIError(400, f"{where}.source: an image source is base64 or url.", param=f"{where}.source.type")


def image_params(req: MessagesRequest) -> list[str]:
    """Where each image of the request is, in prompt order (for error messages)."""
    return [
        f"messages.{i}.content.{j}"
        for i, turn in enumerate(req.messages)
        if not isinstance(turn.content, str) and turn.role == "user"
        for j, block in enumerate(turn.content)
        if block.get("type") == "image"
    ]


def chat_tools(req: MessagesRequest) -> tuple[list[dict[str, Any]] | None, Any]:
    """Anthropic's `tools`/`tool_choice` as OpenAI's (the form the tool machinery reads)."""
    if not req.tools:
        return None, None
    tools = []
    for i, tool in enumerate(req.tools):
        if tool.get("type") not in (None, "custom"):
            raise APIError(
                400,
                f"tools.{i}: server tools ({tool.get('type')}) are not supported here.",
                param=f"tools.{i}.type",
            )
        function = {
            "name": str(_block_field(tool, "name", f"tools.{i}")),
            "description": str(tool.get("description") or ""),
            "parameters": tool.get("input_schema") or {"type": "object", "properties": {}},
        }
        tools.append({"type": "function", "function": function})
    choice = req.tool_choice or {"type": "auto"}
    kind = choice.get("type")
    if kind == "tool":
        return tools, {
            "type": "function",
            "function": {"name": str(_block_field(choice, "name", "tool_choice"))},
        }
    mapped = {"auto": "auto", "any": "required", "none": "none"}.get(str(kind))
    if mapped is None:
        raise APIError(
            400, f"tool_choice.type {kind!r} is not one of auto, any, tool, none.", param="tool_choice"
        )
    return tools, mapped


class MessagesFraming:
    """A Messages answer: the whole message, or its stream of events (message_start,
    content_block_start, content_block_delta..., content_block_stop, message_delta, message_stop)."""

    def __init__(self, model: str) -> None:
        self.id = "msg_" + uuid.uuid4().hex
        self.model = model
        self.stop_reason: str | None = None

    def head(self, index: int = 0) -> bytes:
        start = message(self.id, self.model, [], None, {})
        return (
            event("message_start", {"type": "message_start", "message": start})
            + event(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
            + event("ping", {"type": "ping"})
        )

    def piece(self, text: str, index: int = 0) -> bytes:
        delta = {"type": "text_delta", "text": text}
        return event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})

    def tail(self, finish_reason: str, index: int = 0) -> bytes:
        self.stop_reason = STOP_REASONS.get(finish_reason, "end_turn")
        return event("content_block_stop", {"type": "content_block_stop", "index": 0})

    def usage_chunk(self, usage: dict[str, int]) -> bytes:
        delta = {"stop_reason": self.stop_reason or "end_turn", "stop_sequence": None}
        counts = {"input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"]}
        return event("message_delta", {"type": "message_delta", "delta": delta, "usage": counts}) + event(
            "message_stop", {"type": "message_stop"}
        )

    def done(self) -> bytes:
        return b""

    def error(self, exc: APIError) -> bytes:
        return event("error", anthropic_error(exc.status, exc.message))

    def whole(self, choices: list[protocol.Choice], usage: dict[str, int]) -> dict[str, Any]:
        (text, finish_reason), *_ = choices
        content = [{"type": "text", "text": text}] if text else []
        return message(self.id, self.model, content, STOP_REASONS.get(finish_reason, "end_turn"), usage)


def from_chat_completion(message_id: str, model: str, body: dict[str, Any]) -> dict[str, Any]:
    """A whole chat completion (with tool calls, perhaps) as a Message."""
    choice = body["choices"][0]
    reply = choice["message"]
    content: list[Block] = []
    if reply.get("content"):
        content.append({"type": "text", "text": reply["content"]})
    for call in reply.get("tool_calls") or []:
        try:
            arguments = json.loads(call["function"]["arguments"] or "{}")
        except ValueError:
            arguments = {}
        tool_use = {
            "type": "tool_use",
            "id": "toolu_" + call["id"].removeprefix("call_"),
            "name": call["function"]["name"],
        }
        content.append({**tool_use, "input": arguments})
    reason = STOP_REASONS.get(choice["finish_reason"], "end_turn")
    return message(message_id, model, content, reason, body["usage"])


def message_events(whole: dict[str, Any]) -> bytes:
    """A whole Message sent as the events of a stream."""
    start = {**whole, "content": [], "stop_reason": None, "usage": {**whole["usage"], "output_tokens": 0}}
    out = [event("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(whole["content"]):
        opened: dict[str, Any]
        delta: dict[str, Any]
        if block["type"] == "text":
            opened, delta = {"type": "text", "text": ""}, {"type": "text_delta", "text": block["text"]}
        else:
            opened = {**block, "input": {}}
            delta = {
                "type": "input_json_delta",
                "partial_json": json.dumps(block["input"], ensure_ascii=False),
            }
        out.append(
            event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": opened},
            )
        )
        out.append(
            event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        )
        out.append(event("content_block_stop", {"type": "content_block_stop", "index": index}))
    delta = {"stop_reason": whole["stop_reason"], "stop_sequence": None}
    out.append(event("message_delta", {"type": "message_delta", "delta": delta, "usage": whole["usage"]}))
    out.append(event("message_stop", {"type": "message_stop"}))
    return b"".join(out)


async def _prompt(server: ModelServer, req: MessagesRequest) -> tuple[str, list[dict[str, Any]], Any, Any]:
    """The rendered prompt of the request, its chat messages, and its tools and tool choice in chat
    completions' form."""
    tools, tool_choice = chat_tools(req)
    messages = chat_messages(req)
    prompt = await render_chat(server, messages, tools, tool_choice)
    return prompt, messages, tools, tool_choice


async def count_tokens(server: ModelServer, request: Request) -> Response:
    """POST /v1/messages/count_tokens: the prompt's tokens as the model will see it."""
    try:
        body = orjson.loads(await read_body(request, server.max_body_bytes))
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict):
        body.setdefault("max_tokens", 1)  # not part of this request's schema
    req = parse(MessagesRequest, orjson.dumps(body) if body is not None else b"{")
    server.check_model(req.model)
    prompt, _, _, _ = await _prompt(server, req)
    tokens = await asyncio.to_thread(server.backend.tokenize, prompt)
    return json_response({"input_tokens": len(tokens)})


async def create_message(server: ModelServer, request: Request) -> Response:
    arrival = time.perf_counter()
    body = await read_body(request, server.max_body_bytes)
    req = parse(MessagesRequest, body)
    server.check_model(req.model)
    server.note_prompt(body)
    prompt, messages, tools, tool_choice = await _prompt(server, req)
    sampling = protocol.SamplingRequest.model_validate(
        {"temperature": req.temperature, "top_p": req.top_p, "top_k": req.top_k, "stop": req.stop_sequences}
    )
    params = sampling_params(server.config, sampling, req.max_tokens)
    params.images = await request_images(server.backend.capabilities().vision, messages, image_params(req))
    framing = MessagesFraming(server.name)
    plan = plan_tools(server.config, tools, tool_choice, server.backend.capabilities().structured_output)
    common: dict[str, Any] = {
        "prompts": [(prompt, server.renderer.reply_prefix)],
        "params": params,
        "prompt_param": "messages",
        "arrival": arrival,
        "n": 1,
    }
    if plan is None:
        return await respond(
            server, request, framing=framing, stream=req.stream, include_usage=req.stream, **common
        )
    _, tool_framing = await answer_with_tools(server, request, plan, **common)
    whole = from_chat_completion(framing.id, server.name, tool_framing.body)
    if not req.stream:
        return json_response(whole)
    return sse_response(message_events(whole))


def anthropic_errors(
    route: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """`route` with its error answers (the shared, OpenAI-shaped ones included) in Anthropic's shape."""

    async def shaped(request: Request) -> Response:
        response = await route(request)
        if response.status_code < 400 or response.media_type != "application/json":
            return response
        try:
            body = orjson.loads(response.body)
        except orjson.JSONDecodeError:
            body = None
        headers = {
            k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")
        }
        return Response(
            orjson.dumps(from_openai_error(body, response.status_code)),
            status_code=response.status_code,
            headers=headers,
            media_type="application/json",
        )

    return shaped
