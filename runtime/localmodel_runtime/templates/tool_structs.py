"""Tools and tool calls as the Go structs LocalAI's templates see (names, JSON tags, float64 numbers)."""

from __future__ import annotations

import json
from typing import Any

from .govalues import GoStruct


def as_json_numbers(value: Any) -> Any:
    """Numbers as Go's encoding/json decodes them into `interface{}`: float64."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, dict):
        return {str(k): as_json_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json_numbers(v) for v in value]
    return value


def tool_call_struct(index: int, call: dict[str, Any]) -> GoStruct:
    """An OpenAI tool call as LocalAI's `schema.ToolCall`, the value its templates range over."""
    function = call.get("function") or {}
    arguments = function.get("arguments", "")
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, separators=(",", ":"), ensure_ascii=False)
    return GoStruct(
        "schema.ToolCall",
        {
            "Index": call.get("index", index),
            "ID": call.get("id", "") or "",
            "Type": call.get("type", "") or "",
            "FunctionCall": GoStruct(
                "schema.FunctionCall",
                {"Name": function.get("name", "") or "", "Arguments": arguments},
                {"Name": ("name", False), "Arguments": ("arguments", False)},
            ),
        },
        {
            "Index": ("index", False),
            "ID": ("id", False),
            "Type": ("type", False),
            "FunctionCall": ("function", False),
        },
    )


def function_struct(name: str, description: str, strict: bool, parameters: Any) -> GoStruct:
    """A tool's function as LocalAI's `functions.Function`."""
    return GoStruct(
        "functions.Function",
        {
            "Name": name,
            "Description": description,
            "Strict": strict,
            "Parameters": as_json_numbers(parameters),
        },
        {
            "Name": ("name", False),
            "Description": ("description", False),
            "Strict": ("strict", False),
            "Parameters": ("parameters", False),
        },
    )
