"""Reading a model's reply back as OpenAI tool calls, and the schema the tools become (tools.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from localmodel_runtime.config import ModelConfig
from localmodel_runtime.server.errors import APIError
from localmodel_runtime.server.tools import json_output, parse_reply, plan_tools
from tests.support.model_configs import model_config

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "get_time"}},
]


def config(**function: Any) -> ModelConfig:
    return model_config(function=function) if function else model_config()


def test_plan_offers_the_tools_and_the_no_action_answer() -> None:
    plan = plan_tools(config(), TOOLS, "auto", structured_output=True)
    assert plan is not None and plan.constrained and not plan.parallel
    assert [name for name, _ in plan.functions] == ["get_weather", "get_time", "answer"]
    assert [alt["properties"]["name"]["const"] for alt in plan.schema()["oneOf"]] == [
        "get_weather",
        "get_time",
        "answer",
    ]
    required = plan_tools(config(), TOOLS, "required", structured_output=True)
    assert required is not None and required.no_action is None
    assert plan_tools(config(), TOOLS, "none", structured_output=True) is None
    assert plan_tools(config(), None, "auto", structured_output=True) is None


def test_plan_follows_the_function_block() -> None:
    plan = plan_tools(
        config(
            no_action_function_name="reply",
            function_name_key="function",
            function_arguments_key="params",
            grammar={"parallel_calls": True},
        ),
        TOOLS[:1],
        None,
        structured_output=True,
    )
    assert plan is not None and plan.no_action == "reply" and plan.parallel
    schema = plan.schema()
    assert schema["type"] == "array" and set(schema["items"]["oneOf"][0]["properties"]) == {
        "function",
        "params",
    }
    disabled = plan_tools(config(grammar={"disable": True}), TOOLS, None, structured_output=True)
    assert disabled is not None and not disabled.constrained
    assert not plan_tools(config(), TOOLS, None, structured_output=False).constrained  # type: ignore[union-attr]
    no_answer = plan_tools(config(disable_no_action=True), TOOLS, None, structured_output=True)
    assert no_answer is not None and no_answer.no_action is None


def test_replies_become_calls_or_content() -> None:
    plan = plan_tools(config(grammar={"parallel_calls": True}), TOOLS, "auto", structured_output=True)
    assert plan is not None
    content, calls = parse_reply(plan, '[{"name": "get_weather", "arguments": {"city": "Paris"}}]')
    assert content is None and calls[0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    }
    content, calls = parse_reply(plan, 'Sure: {"name": "answer", "arguments": {"message": "Hello!"}}')
    assert (content, calls) == ("Hello!", [])
    content, calls = parse_reply(plan, '{"name": "launch_rockets", "arguments": {}}')
    assert content == '{"name": "launch_rockets", "arguments": {}}' and calls == []  # not offered: words
    assert parse_reply(plan, "no json here") == ("no json here", [])
    _, two = parse_reply(
        plan, '[{"name": "get_time", "arguments": {}}, {"name": "get_weather", "arguments": {}}]'
    )
    assert [c["function"]["name"] for c in two] == ["get_time", "get_weather"] and two[0]["id"] != two[1][
        "id"
    ]
    assert json.loads(two[0]["function"]["arguments"]) == {}


def test_bad_tools_and_formats_are_400s() -> None:
    with pytest.raises(APIError) as raised:
        plan_tools(
            config(), TOOLS, {"type": "function", "function": {"name": "nope"}}, structured_output=True
        )
    assert raised.value.param == "tool_choice"
    with pytest.raises(APIError):
        plan_tools(config(), [{"type": "function", "function": {"description": "no name"}}], None, True)
    assert json_output({"type": "json_object"}, True) == {"type": "object"}
    assert json_output({"type": "text"}, False) is None
    with pytest.raises(APIError, match="only the llama and vllm backends"):
        json_output({"type": "json_object"}, False)
    with pytest.raises(APIError):
        json_output({"type": "json_schema", "json_schema": {}}, True)
