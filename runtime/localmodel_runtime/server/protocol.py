"""Request models of the OpenAI endpoints, and the response shapes.

Requests are validated with pydantic; unknown fields are allowed (clients send newer OpenAI fields and
LocalAI extensions), wrong types and out-of-range values are 400s. Responses are plain dicts in
OpenAI's key order, serialised with orjson: building a pydantic object per streamed token would cost
more than the token's JSON.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

NonNegFloat = Annotated[float, Field(ge=0)]
Penalty = Annotated[float, Field(ge=-2, le=2)]
Stop = str | list[str] | None


class OpenAIBaseModel(BaseModel):
    # Strict: "12" is not an integer (OpenAI answers 400 for it); JSON numbers still fit float fields.
    model_config = ConfigDict(extra="allow", strict=True)


class StreamOptions(OpenAIBaseModel):
    include_usage: bool | None = None


class SamplingRequest(OpenAIBaseModel):
    """Fields every generating endpoint shares: OpenAI's, plus LocalAI's llama.cpp extensions."""

    model: str = ""
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    min_p: Annotated[float, Field(ge=0, le=1)] | None = None
    typical_p: NonNegFloat | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    seed: int | None = None
    stop: Stop = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    repeat_penalty: NonNegFloat | None = None
    repeat_last_n: Annotated[int, Field(ge=-1)] | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | int | None = None
    mirostat: Literal[0, 1, 2] | None = None
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None
    grammar: str | None = None
    ignore_eos: bool | None = None
    user: str | None = None


class ChatMessage(OpenAIBaseModel):
    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    function_call: dict[str, Any] | None = None
    tool_call_id: str | None = None


class ChatCompletionRequest(SamplingRequest):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    reasoning_effort: str | None = None
    metadata: dict[str, str] | None = None
    response_format: dict[str, Any] | None = None


class CompletionRequest(SamplingRequest):
    prompt: str | list[str] | list[int] | list[list[int]] = ""
    echo: bool | None = None
    suffix: str | None = None
    best_of: Annotated[int, Field(ge=1)] | None = None
    response_format: dict[str, Any] | None = None


class EditRequest(SamplingRequest):
    instruction: str
    input: str = ""


class EmbeddingRequest(OpenAIBaseModel):
    model: str = ""
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Field(ge=1)] | None = None
    user: str | None = None


class RerankDocument(OpenAIBaseModel):
    text: str


class RerankRequest(OpenAIBaseModel):
    """LocalAI's `/v1/rerank` (Jina's and Cohere's shape): documents as strings or `{"text": ...}`."""

    model: str = ""
    query: str
    documents: list[str | RerankDocument]
    top_n: Annotated[int, Field(ge=1)] | None = None
    return_documents: bool = True


# -- responses ---------------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


Choice = tuple[str, str]
"""One choice of a whole response: its text and finish reason."""


def chat_completion(
    id_: str, created: int, model: str, choices: list[Choice], use: dict[str, int]
) -> dict[str, Any]:
    return {
        "id": id_,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": index,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
            for index, (text, finish_reason) in enumerate(choices)
        ],
        "usage": use,
    }


def text_completion(
    id_: str, created: int, model: str, choices: list[Choice], use: dict[str, int]
) -> dict[str, Any]:
    return {
        "id": id_,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}
            for index, (text, finish_reason) in enumerate(choices)
        ],
        "usage": use,
    }


def edit(created: int, choices: list[Choice], use: dict[str, int]) -> dict[str, Any]:
    """OpenAI's legacy /v1/edits response."""
    return {
        "object": "edit",
        "created": created,
        "choices": [{"text": text, "index": index} for index, (text, _) in enumerate(choices)],
        "usage": use,
    }


def embeddings(model: str, vectors: list[Any], prompt_tokens: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def rerank(model: str, results: list[dict[str, Any]], prompt_tokens: int) -> dict[str, Any]:
    return {
        "model": model,
        "usage": {"total_tokens": prompt_tokens, "prompt_tokens": prompt_tokens},
        "results": results,
    }


def model_card(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "localmodel"}
