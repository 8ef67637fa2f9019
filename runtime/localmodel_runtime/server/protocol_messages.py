"""Anthropic's Messages API (`POST /v1/messages`): the request model, and the response shapes.

What Claude Code and the `anthropic` SDK send: `model`, `max_tokens` (required), `messages` whose content
is a string or blocks (`text`, `tool_use`, `tool_result`), `system`, `stop_sequences`, sampling fields,
`tools`/`tool_choice` and `stream`. Unknown fields are allowed, as Anthropic adds them often.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from .protocol import OpenAIBaseModel

Block = dict[str, Any]


class AnthropicMessage(OpenAIBaseModel):
    role: Literal["user", "assistant"]
    content: str | list[Block]


class MessagesRequest(OpenAIBaseModel):
    model: str = ""
    max_tokens: Annotated[int, Field(ge=1)]
    messages: Annotated[list[AnthropicMessage], Field(min_length=1)]
    system: str | list[Block] | None = None
    stop_sequences: list[str] | None = None
    stream: bool = False
    temperature: Annotated[float, Field(ge=0, le=1)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    metadata: dict[str, Any] | None = None
    tools: list[Block] | None = None
    tool_choice: Block | None = None


STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def message(
    message_id: str,
    model: str,
    content: list[Block],
    stop_reason: str | None,
    usage: dict[str, int],
) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": usage.get("prompt_tokens", 0),
            "output_tokens": usage.get("completion_tokens", 0),
        },
    }
