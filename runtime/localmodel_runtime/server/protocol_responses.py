"""OpenAI's Responses API (`POST /v1/responses`): the request model, and the response object.

What Codex CLI and the `openai` SDK's `client.responses` send: `input` (a string, or message and
function-call items), `instructions`, `max_output_tokens`, sampling fields, `tools`/`tool_choice` (flat
function tools), `text.format` for JSON output and `stream`. Nothing is stored: `previous_response_id`
is refused, and `store` is answered with false.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from pydantic import Field

from .protocol import OpenAIBaseModel, now

Item = dict[str, Any]


class ResponsesRequest(OpenAIBaseModel):
    model: str = ""
    input: str | list[Item]
    instructions: str | None = None
    max_output_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    stream: bool = False
    tools: list[Item] | None = None
    tool_choice: str | Item | None = None
    text: Item | None = None
    previous_response_id: str | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    seed: int | None = None


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def usage(counts: dict[str, int]) -> dict[str, Any]:
    prompt, completion = counts.get("prompt_tokens", 0), counts.get("completion_tokens", 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def response(
    response_id: str,
    model: str,
    req: ResponsesRequest,
    output: list[Item],
    status: str,
    counts: dict[str, int] | None,
) -> dict[str, Any]:
    """The response object, `in_progress` (no usage yet) or finished."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": now(),
        "status": status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": req.temperature,
        "text": req.text or {"format": {"type": "text"}},
        "tool_choice": req.tool_choice or "auto",
        "tools": req.tools or [],
        "top_p": req.top_p,
        "truncation": "disabled",
        "usage": usage(counts) if counts is not None else None,
        "metadata": req.metadata or {},
    }


def message_item(item_id: str, text: str, status: str = "completed") -> Item:
    content = [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}
