"""POST /v1/responses: OpenAI's Responses API (Codex CLI, `client.responses`) over the same chat
template, generation, admission and tool calling as /v1/chat/completions.

`input` becomes chat messages (`instructions` and system/developer items first; `function_call` items
become assistant tool calls, `function_call_output` items tool messages). A plain answer streams as it
is generated (response.created ... response.output_text.delta ... response.completed); an answer that
may call tools is known only once complete, so it is generated whole and then sent as those events.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from . import protocol
from .errors import APIError
from .images import image_part, request_images
from .protocol_responses import Item, ResponsesRequest, message_item, new_id, response
from .serving import ModelServer, parse, read_body, respond, sampling_params
from .serving_chat import answer_with_tools, render_chat
from .streaming import json_response, sse_response
from .tools import json_output, plan_tools

_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


def _content_text(content: Any, where: str) -> str:
    parts = _content_parts(content, where, images=False)
    assert isinstance(parts, str)  # without images the content is text
    return parts


def _content_parts(content: Any, where: str, *, images: bool = True) -> str | list[dict[str, Any]]:
    """A message's content as chat content: its text, or with images (`input_image` with an
    `image_url`) a list of text and image parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise APIError(400, f"{where}: content must be a string or a list of parts.", param=where)
    texts = []
    parts: list[dict[str, Any]] = []
    for k, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            texts.append(str(part.get("text") or ""))
            parts.append({"type": "text", "text": texts[-1]})
        elif kind == "input_image" and images and isinstance(part.get("image_url"), str):
            parts.append(image_part(part["image_url"]))
        elif kind in ("input_image", "input_file", "input_audio"):
            if kind == "input_image" and images:
                problem = "an input_image part needs an image_url (file_id is not supported)"
            else:
                problem = f"{kind} parts are not supported here"
            raise APIError(400, f"{where}.{k}: {problem}.", param=f"{where}.{k}")
        else:
            raise APIError(
                400, f"{where}.{k}: unsupported content part type {kind!r}.", param=f"{where}.{k}.type"
            )
    return parts if len(parts) > len(texts) else "\n".join(texts)


def image_params(req: ResponsesRequest) -> list[str]:
    """Where each image of the request is, in prompt order (for error messages)."""
    if isinstance(req.input, str):
        return []
    return [
        f"input.{i}.content.{k}"
        for i, item in enumerate(req.input)
        if item.get("type", "message") == "message" and isinstance(item.get("content"), list)
        for k, part in enumerate(item["content"])
        if isinstance(part, dict) and part.get("type") == "input_image"
    ]


def chat_messages(req: ResponsesRequest) -> list[dict[str, Any]]:
    """The request's `instructions` and `input` as the chat messages the model's template renders."""
    messages: list[dict[str, Any]] = []
    if req.instructions:
        messages.append({"role": "system", "content": req.instructions})
    if isinstance(req.input, str):
        return [*messages, {"role": "user", "content": req.input}]
    for i, item in enumerate(req.input):
        where = f"input.{i}"
        kind = item.get("type", "message")
        if kind == "message":
            role = _ROLES.get(str(item.get("role")))
            if role is None:
                raise APIError(
                    400, f"{where}.role must be user, assistant, system or developer.", param=f"{where}.role"
                )
            messages.append(
                {"role": role, "content": _content_parts(item.get("content"), f"{where}.content")}
            )
        elif kind == "function_call":
            call = {
                "id": str(item.get("call_id") or item.get("id") or new_id("call")),
                "type": "function",
                "function": {
                    "name": str(item.get("name") or ""),
                    "arguments": str(item.get("arguments") or "{}"),
                },
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)  # parallel calls: one assistant turn
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else _content_text(output, f"{where}.output")
            messages.append({"role": "tool", "tool_call_id": str(item.get("call_id") or ""), "content": text})
        elif kind == "reasoning":
            continue
        else:
            raise APIError(400, f"{where}: unsupported input item type {kind!r}.", param=f"{where}.type")
    return messages


def chat_tools(req: ResponsesRequest) -> tuple[list[dict[str, Any]] | None, Any]:
    """The Responses API's flat function tools and tool_choice as chat completions' nested ones."""
    tools = []
    for i, tool in enumerate(req.tools or []):
        if tool.get("type") != "function":
            raise APIError(
                400, f"tools.{i}: {tool.get('type')!r} tools are not supported here.", param=f"tools.{i}.type"
            )
        function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
        tools.append({"type": "function", "function": function})
    choice: Any = req.tool_choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        choice = {"type": "function", "function": {"name": choice.get("name")}}
    return tools or None, choice


def _json_format(req: ResponsesRequest) -> dict[str, Any] | None:
    """`text.format` as chat completions' `response_format`."""
    fmt = (req.text or {}).get("format") if isinstance(req.text, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt.get("type") == "json_schema":
        schema = {
            "name": fmt.get("name", "response"),
            "schema": fmt.get("schema"),
            "strict": fmt.get("strict"),
        }
        return {"type": "json_schema", "json_schema": schema}
    return {"type": fmt.get("type")}


class ResponsesStream:
    """The events of a streamed response, each `event: TYPE` with a rising `sequence_number`."""

    def __init__(self, model: str, req: ResponsesRequest) -> None:
        self.id = new_id("resp")
        self.message_id = new_id("msg")
        self.model = model
        self.req = req
        self.sequence = 0
        self.text: list[str] = []
        self.finish_reason = "stop"

    def event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def finished(self, output: list[Item], finish_reason: str, counts: dict[str, int]) -> dict[str, Any]:
        """The response object once generated: `incomplete` when it ran out of `max_output_tokens`."""
        status = "incomplete" if finish_reason == "length" else "completed"
        return response(self.id, self.model, self.req, output, status, counts)

    def opening(self) -> bytes:
        started = response(self.id, self.model, self.req, [], "in_progress", None)
        return self.event("response.created", response=started) + self.event(
            "response.in_progress", response=started
        )

    def item_events(self, index: int, item: Item) -> bytes:
        """One finished output item sent as the events that build it."""
        if item["type"] == "message":
            text = item["content"][0]["text"] if item["content"] else ""
            return (
                self.event(
                    "response.output_item.added",
                    output_index=index,
                    item=message_item(item["id"], "", "in_progress"),
                )
                + self._part_added(item["id"], index)
                + self._text_delta(item["id"], index, text)
                + self._text_done(item["id"], index, text, item)
            )
        opened = {**item, "arguments": "", "status": "in_progress"}
        ids = {"item_id": item["id"], "output_index": index}
        return (
            self.event("response.output_item.added", output_index=index, item=opened)
            + self.event("response.function_call_arguments.delta", **ids, delta=item["arguments"])
            + self.event("response.function_call_arguments.done", **ids, arguments=item["arguments"])
            + self.event("response.output_item.done", output_index=index, item=item)
        )

    def _part_added(self, item_id: str, index: int) -> bytes:
        part = {"type": "output_text", "text": "", "annotations": []}
        return self.event(
            "response.content_part.added", item_id=item_id, output_index=index, content_index=0, part=part
        )

    def _text_delta(self, item_id: str, index: int, delta: str) -> bytes:
        ids = {"item_id": item_id, "output_index": index, "content_index": 0}
        return self.event("response.output_text.delta", **ids, delta=delta, logprobs=[])

    def _text_done(self, item_id: str, index: int, text: str, item: Item) -> bytes:
        ids = {"item_id": item_id, "output_index": index, "content_index": 0}
        part = {"type": "output_text", "text": text, "annotations": []}
        return (
            self.event("response.output_text.done", **ids, text=text, logprobs=[])
            + self.event("response.content_part.done", **ids, part=part)
            + self.event("response.output_item.done", output_index=index, item=item)
        )

    def closing(self, whole: dict[str, Any]) -> bytes:
        kind = "response.incomplete" if whole["status"] == "incomplete" else "response.completed"
        return self.event(kind, response=whole)


class ResponsesFraming(ResponsesStream):
    """A plain (tool-less) answer, streamed as it is generated or whole."""

    def head(self, index: int = 0) -> bytes:
        added = message_item(self.message_id, "", "in_progress")
        return (
            self.opening()
            + self.event("response.output_item.added", output_index=0, item=added)
            + self._part_added(self.message_id, 0)
        )

    def piece(self, text: str, index: int = 0) -> bytes:
        self.text.append(text)
        return self._text_delta(self.message_id, 0, text)

    def tail(self, finish_reason: str, index: int = 0) -> bytes:
        self.finish_reason = finish_reason
        text = "".join(self.text)
        return self._text_done(self.message_id, 0, text, message_item(self.message_id, text))

    def usage_chunk(self, counts: dict[str, int]) -> bytes:
        output = [message_item(self.message_id, "".join(self.text))]
        return self.closing(self.finished(output, self.finish_reason, counts))

    def done(self) -> bytes:
        return b""

    def error(self, exc: APIError) -> bytes:
        return self.event("error", code=exc.code, message=exc.message, param=exc.param)

    def whole(self, choices: list[protocol.Choice], counts: dict[str, int]) -> dict[str, Any]:
        (text, finish_reason), *_ = choices
        return self.finished([message_item(self.message_id, text)], finish_reason, counts)


def from_chat_completion(stream: ResponsesStream, body: dict[str, Any]) -> dict[str, Any]:
    """A whole chat completion (with tool calls, perhaps) as a response object."""
    choice = body["choices"][0]
    reply = choice["message"]
    output: list[Item] = []
    if reply.get("content"):
        output.append(message_item(stream.message_id, reply["content"]))
    for call in reply.get("tool_calls") or []:
        function = call["function"]
        item = {"type": "function_call", "id": new_id("fc"), "call_id": call["id"], "status": "completed"}
        output.append({**item, "name": function["name"], "arguments": function["arguments"]})
    return stream.finished(output, choice["finish_reason"], body["usage"])


async def create_response(server: ModelServer, request: Request) -> Response:
    arrival = time.perf_counter()
    body = await read_body(request, server.max_body_bytes)
    req = parse(ResponsesRequest, body)
    server.check_model(req.model)
    server.note_prompt(body)
    if req.previous_response_id:
        raise APIError(
            400,
            "previous_response_id is not supported: this server stores no responses; send the whole "
            "conversation in `input`.",
            param="previous_response_id",
        )
    tools, tool_choice = chat_tools(req)
    messages = chat_messages(req)
    images = await request_images(server.backend.capabilities().vision, messages, image_params(req))
    prompt = await render_chat(server, messages, tools, tool_choice, param="input")
    sampling = protocol.SamplingRequest.model_validate(
        {"temperature": req.temperature, "top_p": req.top_p, "seed": req.seed}
    )
    params = sampling_params(server.config, sampling, req.max_output_tokens)
    params.images = images
    structured = server.backend.capabilities().structured_output
    common: dict[str, Any] = {
        "prompts": [(prompt, server.renderer.reply_prefix)],
        "params": params,
        "prompt_param": "input",
        "arrival": arrival,
        "n": 1,
    }
    plan = plan_tools(server.config, tools, tool_choice, structured)
    framing = ResponsesFraming(server.name, req)
    if plan is None:
        params.json_schema = json_output(_json_format(req), structured)
        return await respond(
            server, request, framing=framing, stream=req.stream, include_usage=req.stream, **common
        )
    _, tool_framing = await answer_with_tools(server, request, plan, **common)
    whole = from_chat_completion(framing, tool_framing.body)
    if not req.stream:
        return json_response(whole)
    events = framing.opening()
    for index, item in enumerate(whole["output"]):
        events += framing.item_events(index, item)
    events += framing.closing(whole)
    return sse_response(events)
