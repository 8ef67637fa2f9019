"""Real text from Gemma 3 270M through the server: a completion, a streamed chat, sampled choices, a
tool call."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest

from tests.support.runtime_server import RuntimeServer, runtime_server

pytestmark = pytest.mark.slow

# Gemma 3 270M is a base model without a chat template in its GGUF: a Go template renders the chat as
# the question/answer text it continues well, and a stop word ends the answer at the next question.
QA_CHAT_MESSAGE = '{{if eq .RoleName "assistant"}}A: {{.Content}}{{else}}Q: {{.Content}}{{end}}'


@pytest.fixture(scope="module")
def gemma(tmp_path_factory: pytest.TempPathFactory, gemma_gguf: Path) -> Iterator[RuntimeServer]:
    config = {
        "name": "gemma-3-270m",
        "backend": "llama",
        "context_size": 2048,
        "parameters": {"model": gemma_gguf.name, "temperature": 0},
        "template": {"chat_message": QA_CHAT_MESSAGE, "chat": "{{.Input}}\nA:"},
        "stopwords": ["\nQ:"],
    }
    with runtime_server(tmp_path_factory.mktemp("gemma"), config, gemma_gguf.parent) as running:
        yield running


def test_completion(gemma: RuntimeServer) -> None:
    # Question-shaped: after a bare "The capital of France is" the model rambles under greedy decoding.
    reply = gemma.client().completions.create(
        model="gemma-3-270m", prompt="Q: What is the capital of France?\nA:", max_tokens=16
    )
    assert "Paris" in reply.choices[0].text


def test_streamed_chat(gemma: RuntimeServer) -> None:
    stream = gemma.client().chat.completions.create(
        model="gemma-3-270m",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish in (["stop"], ["length"])
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 10


def test_several_sampled_choices_differ(gemma: RuntimeServer) -> None:
    """`n` sampled choices are separate generations (seed + index): real text, not copies."""
    reply = gemma.client().completions.create(
        model="gemma-3-270m", prompt="Once upon a time", max_tokens=12, temperature=1.0, seed=1, n=3
    )
    texts = [c.text for c in reply.choices]
    assert [c.index for c in reply.choices] == [0, 1, 2] and all(texts)
    assert len(set(texts)) > 1, texts


def test_tool_call_with_real_arguments(gemma: RuntimeServer) -> None:
    """Under the tools' grammar Gemma 3 270M fills in the argument the question names."""
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Get the weather of a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    reply = gemma.client().chat.completions.create(
        model="gemma-3-270m",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=tools,  # type: ignore[arg-type]
        tool_choice="required",
        max_tokens=60,
    )
    (call,) = reply.choices[0].message.tool_calls or []
    assert reply.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}


def test_responses_api_answers_in_words(gemma: RuntimeServer) -> None:
    reply = gemma.client().responses.create(
        model="gemma-3-270m", input="What is the capital of France?", max_output_tokens=24
    )
    assert "Paris" in reply.output_text


def test_messages_api_answers_in_words(gemma: RuntimeServer) -> None:
    client = anthropic.Anthropic(base_url=gemma.base_url, api_key="unused", max_retries=0)
    with (
        client,
        client.messages.stream(
            model="gemma-3-270m",
            max_tokens=24,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
        ) as stream,
    ):
        text = "".join(stream.text_stream)
    assert "Paris" in text
