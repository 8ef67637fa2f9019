"""Tool calls and JSON output, as LocalAI does them: the request's tools become a JSON schema the backend
generates under (a grammar, on backends with structured output), and the reply is read back as
OpenAI `tool_calls`.

The model answers `{"name": …, "arguments": {…}}` (the keys are `function.function_name_key` and
`function.function_arguments_key`), or a list of those with `function.grammar.parallel_calls`. Unless
`function.disable_no_action` (or `tool_choice` requires a tool), LocalAI's no-action function
(`answer`, with a `message`) lets the model reply in words: that call becomes the message's content.
`response_format` (`json_object`, `json_schema`) uses the same machinery without tools.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from ..config import ModelConfig
from .errors import APIError

NO_ACTION_NAME = "answer"


@dataclass(frozen=True)
class ToolPlan:
    """The tools one chat request offers, and how the reply names them."""

    functions: list[tuple[str, dict[str, Any]]]
    """(name, parameters schema) of each function the model may call, the no-action one included."""
    no_action: str | None
    name_key: str
    arguments_key: str
    parallel: bool
    constrained: bool
    """Whether the reply is generated under the schema (else it is only parsed when it is JSON)."""

    def schema(self) -> dict[str, Any]:
        calls = [
            {
                "type": "object",
                "properties": {self.name_key: {"const": name}, self.arguments_key: parameters},
                "required": [self.name_key, self.arguments_key],
            }
            for name, parameters in self.functions
        ]
        one: dict[str, Any] = calls[0] if len(calls) == 1 else {"oneOf": calls}
        return {"type": "array", "items": one, "minItems": 1} if self.parallel else one


def plan_tools(
    config: ModelConfig,
    tools: list[dict[str, Any]] | None,
    tool_choice: Any,
    structured_output: bool,
) -> ToolPlan | None:
    """The plan for a request's `tools`/`tool_choice`; None when no tool may be called."""
    if not tools or tool_choice == "none":
        return None
    functions: list[tuple[str, dict[str, Any]]] = []
    for tool in tools:
        fn = tool.get("function") if tool.get("type", "function") == "function" else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise APIError(400, "Each tool needs a function with a name.", param="tools")
        parameters = fn.get("parameters")
        functions.append((fn["name"], parameters if isinstance(parameters, dict) else {"type": "object"}))
    forced = tool_choice.get("function", {}).get("name") if isinstance(tool_choice, dict) else None
    if forced:
        functions = [f for f in functions if f[0] == forced]
        if not functions:
            raise APIError(
                400, f"tool_choice names {forced!r}, which is not among the tools.", param="tool_choice"
            )
    fc = config.function
    grammar = fc.grammar if fc else None
    no_action = None
    if not forced and tool_choice != "required" and not (fc and fc.disable_no_action):
        no_action = (fc.no_action_function_name if fc else None) or NO_ACTION_NAME
        functions.append(
            (
                no_action,
                {
                    "type": "object",
                    "properties": {"message": {"type": "string"}},
                    "required": ["message"],
                },
            )
        )
    return ToolPlan(
        functions=functions,
        no_action=no_action,
        name_key=(fc.function_name_key if fc else None) or "name",
        arguments_key=(fc.function_arguments_key if fc else None) or "arguments",
        parallel=bool(grammar and grammar.parallel_calls),
        constrained=structured_output and not (grammar and grammar.disable),
    )


def response_format_schema(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """OpenAI's `response_format` as the JSON schema the output must match (None: free text)."""
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise APIError(
                400, "response_format json_schema needs json_schema.schema.", param="response_format"
            )
        return schema
    raise APIError(
        400,
        f"response_format type {kind!r} is not text, json_object or json_schema.",
        param="response_format",
    )


def json_output(response_format: dict[str, Any] | None, structured_output: bool) -> dict[str, Any] | None:
    """The schema `response_format` asks the output to match, refused where the backend cannot."""
    schema = response_format_schema(response_format)
    if schema is not None and not structured_output:
        raise APIError(
            400,
            "response_format asks for JSON, which only the llama and vllm backends enforce.",
            param="response_format",
        )
    return schema


def _json_values(text: str) -> Any:
    """The first JSON object or array in `text` (models may wrap it in prose), or None."""
    decoder = json.JSONDecoder()
    for start, char in enumerate(text):
        if char in "{[":
            try:
                return decoder.raw_decode(text, start)[0]
            except ValueError:
                continue
    return None


def parse_reply(plan: ToolPlan, text: str) -> tuple[str | None, list[dict[str, Any]]]:
    """The message content and OpenAI tool calls a reply makes; a reply that is no call is content."""
    value = _json_values(text)
    items = value if isinstance(value, list) else [value]
    names = {name for name, _ in plan.functions}
    calls: list[dict[str, Any]] = []
    content: list[str] = []
    for item in items:
        if not isinstance(item, dict) or item.get(plan.name_key) not in names:
            return text, []  # not a call to an offered function: the model answered in words
        name, arguments = item[plan.name_key], item.get(plan.arguments_key) or {}
        if name == plan.no_action:
            message = arguments.get("message") if isinstance(arguments, dict) else None
            content.append(message if isinstance(message, str) else json.dumps(arguments))
            continue
        calls.append(
            {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {
                    "name": name,
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                },
            }
        )
    return ("\n".join(content) if content else None), calls
