"""Tool calls and JSON output through a real `localmodel-runtime serve` on the tiny random GGUF.

The tiny model writes noise, so whatever it writes under the tools' grammar is still a well-formed call:
the tests use functions whose arguments are enums (the output is bounded), and check the shape OpenAI
clients rely on: `tool_calls` with JSON `arguments`, `finish_reason: tool_calls`, streamed the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.model_configs import role_lines_template, tiny_gguf_config
from tests.support.runtime_server import RuntimeServer, runtime_server

CONFIG = tiny_gguf_config(context_size=1024, template=role_lines_template("A:"))
UNITS = {"type": "string", "enum": ["celsius", "fahrenheit"]}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "set_unit",
            "description": "Set the temperature unit",
            "parameters": {"type": "object", "properties": {"unit": UNITS}, "required": ["unit"]},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_mode",
            "parameters": {
                "type": "object",
                "properties": {"mode": {"enum": ["fast", "slow"]}},
                "required": ["mode"],
            },
        },
    },
]
MESSAGES = [{"role": "user", "content": "use celsius"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[RuntimeServer]:
    with runtime_server(tmp_path_factory.mktemp("tools"), CONFIG, tiny_gguf.parent) as running:
        yield running


def chat(server: RuntimeServer, **extra: Any) -> Any:
    return server.client().chat.completions.create(
        model="tiny", messages=MESSAGES, tools=TOOLS, **{"max_tokens": 400, "seed": 1, **extra}
    )


def test_a_required_tool_call_comes_back_as_tool_calls(server: RuntimeServer) -> None:
    reply = chat(server, tool_choice="required")
    (choice,) = reply.choices
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    arguments = json.loads(call.function.arguments)
    assert (call.function.name, list(arguments)) in (("set_unit", ["unit"]), ("get_mode", ["mode"]))
    assert arguments.get("unit", "celsius") in UNITS["enum"] and arguments.get("mode", "fast") in (
        "fast",
        "slow",
    )


def test_a_forced_tool_is_the_one_called(server: RuntimeServer) -> None:
    reply = chat(server, tool_choice={"type": "function", "function": {"name": "get_mode"}})
    (call,) = reply.choices[0].message.tool_calls or []
    assert call.function.name == "get_mode" and json.loads(call.function.arguments)["mode"] in (
        "fast",
        "slow",
    )


def test_tool_choice_none_is_a_plain_answer(server: RuntimeServer) -> None:
    reply = chat(server, tool_choice="none", max_tokens=8)
    assert reply.choices[0].message.tool_calls is None and reply.choices[0].finish_reason in (
        "stop",
        "length",
    )


def test_streamed_tool_calls(server: RuntimeServer) -> None:
    stream = chat(server, tool_choice="required", stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].role == "assistant"
    calls = [call for d in deltas for call in d.tool_calls or []]
    assert len(calls) == 1 and calls[0].index == 0 and calls[0].function is not None
    assert calls[0].function.name in ("set_unit", "get_mode") and json.loads(
        calls[0].function.arguments or ""
    )
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_tool_errors_are_clear(server: RuntimeServer) -> None:
    body = {
        "model": "tiny",
        "messages": MESSAGES,
        "tools": TOOLS,
        "tool_choice": {"function": {"name": "nope"}},
    }
    response = httpx.post(f"{server.api_url}/chat/completions", json=body, timeout=30)
    assert response.status_code == 400 and response.json()["error"]["param"] == "tool_choice"
    body = {"model": "tiny", "messages": MESSAGES, "tools": [{"type": "function", "function": {}}]}
    response = httpx.post(f"{server.api_url}/chat/completions", json=body, timeout=30)
    assert response.status_code == 400 and response.json()["error"]["param"] == "tools"


def test_response_format_json_schema(server: RuntimeServer) -> None:
    schema = {"type": "object", "properties": {"unit": UNITS}, "required": ["unit"]}
    response_format = {"type": "json_schema", "json_schema": {"name": "unit", "schema": schema}}
    reply = server.client().chat.completions.create(
        model="tiny",
        messages=MESSAGES,
        max_tokens=400,
        seed=2,
        response_format=response_format,  # type: ignore[arg-type]
    )
    assert json.loads(reply.choices[0].message.content or "")["unit"] in UNITS["enum"]
    completion = httpx.post(
        f"{server.api_url}/completions",
        json={"prompt": "unit:", "max_tokens": 400, "seed": 3, "response_format": response_format},
        timeout=60,
    ).json()
    assert json.loads(completion["choices"][0]["text"])["unit"] in UNITS["enum"]
    bad = httpx.post(
        f"{server.api_url}/completions", json={"prompt": "x", "response_format": {"type": "yaml"}}, timeout=30
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "response_format"
