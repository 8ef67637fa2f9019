"""Read LocalAI model YAML exactly as LocalAI does (gopkg.in/yaml.v3), into typed Python values.

What that means, and why PyYAML will not do:

* YAML 1.2 core schema: `yes`, `no`, `on`, `off` are strings unless the *field* is a boolean, where
  yaml.v3 accepts them (and y/Y/n/N) as booleans;
* a scalar decoded into a string field keeps its text (`main_gpu: 0` → ``"0"``);
* a float decoded into an integer field is truncated (`top_k: 0.9` → ``0``);
* duplicate keys are an error; anchors, aliases and `<<` merge keys work;
* `null`/`~` leaves a field unset.

The decoder walks the YAML node tree alongside the pydantic model's field types, so the coercion
depends on the target type exactly as Go's reflection-driven decoder does. Keys the model does not
know are kept with their plain YAML value.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from localmodel_runtime.errors import LocalModelException

_TAG = "tag:yaml.org,2002:"
_BOOL_WORDS = {
    "y": True,
    "Y": True,
    "yes": True,
    "Yes": True,
    "YES": True,
    "on": True,
    "On": True,
    "ON": True,
    "true": True,
    "True": True,
    "TRUE": True,
    "n": False,
    "N": False,
    "no": False,
    "No": False,
    "NO": False,
    "off": False,
    "Off": False,
    "OFF": False,
    "false": False,
    "False": False,
    "FALSE": False,
}


@dataclass(frozen=True)
class DecodeProblem:
    """One thing that does not fit: where (a dotted path and a 1-based line) and why."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        where = self.path or "<document>"
        return f"line {self.line}: {where}: {self.message}"


class YAMLDecodeError(LocalModelException, ValueError):
    """The text is not YAML, or its values do not fit the types of the fields they are for."""

    def __init__(self, problems: list[DecodeProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def _yaml() -> YAML:
    loader = YAML(typ="safe", pure=True)
    loader.allow_duplicate_keys = False
    return loader


def compose_documents(text: str) -> list[Node]:
    """Parse YAML text into node trees, one per document (empty documents are dropped)."""
    try:
        nodes = list(_yaml().compose_all(text))
    except MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        raise YAMLDecodeError([DecodeProblem("", line, f"invalid YAML: {exc.problem}")]) from exc
    return [node for node in nodes if node is not None]


def plain_value(node: Node) -> Any:
    """The YAML 1.2 value of a node with no target type (unknown keys, untyped blocks)."""
    if isinstance(node, MappingNode):
        return {plain_value(k): plain_value(v) for k, v in _mapping_items(node, "")}
    if isinstance(node, SequenceNode):
        return [plain_value(item) for item in node.value]
    return _scalar_value(node)


def _scalar_value(node: Node) -> Any:
    return _yaml().constructor.construct_object(node, deep=True)


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1 if node.start_mark is not None else 0


def _tag(node: Node) -> str:
    tag = node.tag
    text = tag if isinstance(tag, str) else str(getattr(tag, "value", tag))
    return text.removeprefix(_TAG)


def _mapping_items(node: MappingNode, path: str) -> Iterator[tuple[Node, Node]]:
    """Key/value pairs with `<<` merges applied (explicit keys win) and duplicate keys rejected."""
    seen: dict[Any, int] = {}
    merged: list[tuple[Node, Node]] = []
    own: list[tuple[Node, Node]] = []
    for key, value in node.value:
        if _tag(key) == "merge":
            sources = value.value if isinstance(value, SequenceNode) else [value]
            for source in sources:
                if isinstance(source, MappingNode):
                    merged.extend(_mapping_items(source, path))
            continue
        name = _scalar_value(key) if isinstance(key, ScalarNode) else id(key)
        if name in seen:
            raise YAMLDecodeError(
                [
                    DecodeProblem(
                        _join(path, str(name)),
                        _line(key),
                        f"mapping key {name!r} already defined at line {seen[name]}",
                    )
                ]
            )
        seen[name] = _line(key)
        own.append((key, value))
    own_keys = {_scalar_value(k) for k, _ in own if isinstance(k, ScalarNode)}
    yield from ((k, v) for k, v in merged if _scalar_value(k) not in own_keys)
    yield from own


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class TypedDecoder:
    """Decode node trees into plain Python data shaped for one pydantic model, as yaml.v3 would."""

    def __init__(self) -> None:
        self.problems: list[DecodeProblem] = []

    def decode(self, node: Node, target: Any, path: str = "") -> Any:
        origin = get_origin(target)
        if origin is typing.Annotated:
            return self.decode(node, get_args(target)[0], path)
        if origin in (Union, types.UnionType):
            return self._decode_union(node, [a for a in get_args(target) if a is not type(None)], path)
        if isinstance(node, ScalarNode) and _tag(node) == "null":
            return None
        if target is Any or target is object:
            return plain_value(node)
        if isinstance(target, type) and issubclass(target, BaseModel):
            return self._decode_model(node, target, path)
        if origin is list:
            return self._decode_list(node, get_args(target)[0] if get_args(target) else Any, path)
        if origin is dict or target is dict:
            args = get_args(target)
            return self._decode_dict(node, args[1] if args else Any, path)
        if origin is Literal:
            literal_types = {type(a) for a in get_args(target)}
            return self.decode(node, int if literal_types == {int} else str, path)
        if target in (str, bool, int, float):
            return self._decode_scalar(node, target, path)
        return plain_value(node)

    def _fail(self, node: Node, path: str, message: str) -> None:
        self.problems.append(DecodeProblem(path, _line(node), message))

    def _decode_union(self, node: Node, options: list[Any], path: str) -> Any:
        if isinstance(node, ScalarNode) and _tag(node) == "null":
            return None
        if len(options) == 1:
            return self.decode(node, options[0], path)
        return plain_value(node)  # e.g. bool | None handled above; true unions keep the YAML value

    def _decode_model(self, node: Node, model: type[BaseModel], path: str) -> Any:
        if not isinstance(node, MappingNode):
            self._fail(node, path, f"expected a mapping, got {_describe(node)}")
            return None
        fields = model.model_fields
        by_alias = {(info.alias or name): info for name, info in fields.items()}
        out: dict[str, Any] = {}
        for key_node, value_node in _mapping_items(node, path):
            key = str(_scalar_value(key_node))
            info = by_alias.get(key) or fields.get(key)
            if info is None:
                out[key] = plain_value(value_node)  # unknown key: kept, reported later
                continue
            value = self.decode(value_node, info.annotation, _join(path, key))
            if value is not None:
                out[key] = value
        return out

    def _decode_list(self, node: Node, item: Any, path: str) -> Any:
        if not isinstance(node, SequenceNode):
            self._fail(node, path, f"expected a list, got {_describe(node)}")
            return None
        return [self.decode(child, item, f"{path}[{i}]") for i, child in enumerate(node.value)]

    def _decode_dict(self, node: Node, value_type: Any, path: str) -> Any:
        if not isinstance(node, MappingNode):
            self._fail(node, path, f"expected a mapping, got {_describe(node)}")
            return None
        return {
            str(_scalar_value(k)): self.decode(v, value_type, _join(path, str(_scalar_value(k))))
            for k, v in _mapping_items(node, path)
        }

    def _decode_scalar(self, node: Node, target: type, path: str) -> Any:
        if not isinstance(node, ScalarNode):
            self._fail(node, path, f"expected a {target.__name__}, got {_describe(node)}")
            return None
        tag, text = _tag(node), str(node.value)
        if target is str:
            return text  # yaml.v3: any scalar into a string keeps its text
        if target is bool:
            if tag == "bool" or text in _BOOL_WORDS:
                value = _BOOL_WORDS.get(text)
                if value is not None:
                    return value
            self._fail(node, path, f"cannot use {text!r} as a boolean")
            return None
        value = _scalar_value(node) if tag in ("int", "float") else None
        if target is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if target is int and isinstance(value, float) and math.isfinite(value):
            return int(value)  # yaml.v3 truncates a float decoded into an int field
        if target is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        self._fail(node, path, f"cannot use {text!r} as {'an integer' if target is int else 'a number'}")
        return None


def _describe(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return f"{node.value!r}"
