"""Go values as templates see them: structs, the missing-map-key value, printing and JSON.

Template data is made of plain Python values (str, int, float, bool, None, list, dict — a dict is a Go
map) and :class:`GoStruct` (a Go struct: fixed fields in declaration order, JSON names for `toJson`, and
a missing field is an error rather than `<no value>`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from localmodel_runtime.errors import LocalModelException


class GoExecError(LocalModelException):
    """An execution error of a Go template (LocalAI falls back to the untemplated text)."""


class _NoValue:
    """What Go yields for a missing map key: prints `<no value>`, is false, JSON `null`."""

    _instance: _NoValue | None = None

    def __new__(cls) -> _NoValue:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "<no value>"


NO_VALUE = _NoValue()


class GoStruct(Mapping[str, Any]):
    """A Go struct value. `fields` maps Go names to values in declaration order.

    `json` maps each Go name to `(json_name, omitempty)`; fields without an entry marshal under their Go
    name. The JSON names are also accepted for field access, so templates written against the JSON shape
    (`.function.name`) work as well as those using Go names (`.FunctionCall.Name`).
    """

    def __init__(
        self, type_name: str, fields: dict[str, Any], json: dict[str, tuple[str, bool]] | None = None
    ) -> None:
        self.type_name = type_name
        self.fields = fields
        self.json = json or {}
        self.aliases = {jname: name for name, (jname, _) in self.json.items() if jname not in fields}

    def lookup(self, name: str) -> Any:
        if name in self.fields:
            return self.fields[name]
        if name in self.aliases:
            return self.fields[self.aliases[name]]
        raise GoExecError(f"can't evaluate field {name} in type {self.type_name}")

    def __getitem__(self, name: str) -> Any:
        try:
            return self.lookup(name)
        except GoExecError:
            raise KeyError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def __bool__(self) -> bool:
        return True  # Go: a struct is always true

    def json_items(self) -> Iterator[tuple[str, Any]]:
        for name, value in self.fields.items():
            jname, omitempty = self.json.get(name, (name, False))
            if omitempty and is_empty(value):
                continue
            yield jname, value

    def __repr__(self) -> str:
        return f"GoStruct({self.type_name}, {self.fields!r})"


class NilMap(dict[str, Any]):
    """A nil Go map of a typed field (e.g. `.Metadata`): indexes to `<no value>`, JSON `null`."""


class NilList(list[Any]):
    """A nil Go slice of a typed field (e.g. `.Functions`): ranges over nothing, JSON `null`."""


def is_empty(value: Any) -> bool:
    """Sprig's `empty` (and encoding/json's omitempty): nil, zero, "" and empty collections."""
    if value is None or value is NO_VALUE:
        return True
    if isinstance(value, GoStruct):
        return False
    if isinstance(value, bool | int | float):
        return not value
    if isinstance(value, str | list | tuple | dict):
        return len(value) == 0
    return False


# Printing -----------------------------------------------------------------------------------------


def _shortest_digits(f: float) -> tuple[str, int]:
    """Shortest round-trip digits of abs(f) and the decimal point position (Go's `digs.dp`)."""
    _, digits, exponent = Decimal(repr(abs(f))).normalize().as_tuple()
    text = "".join(map(str, digits)).rstrip("0") or "0"
    assert isinstance(exponent, int)
    return text, len(digits) + exponent


def format_float(f: float, mode: str = "g") -> str:
    """strconv.FormatFloat(f, 'g', -1, 64) (mode "g", what %v prints) or encoding/json's format."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1, f) < 0 and mode == "g" else "0"
    digits, dp = _shortest_digits(f)
    sign = "-" if f < 0 else ""
    exp = dp - 1
    # encoding/json switches to exponents outside [1e-6, 1e21); %v is %g with shortest digits, which
    # Go decides with precision 6.
    use_exp = (abs(f) < 1e-6 or abs(f) >= 1e21) if mode == "json" else (exp < -4 or exp >= 6)
    if use_exp:
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        width = 1 if mode == "json" else 2
        return f"{sign}{mant}e{'-' if exp < 0 else '+'}{abs(exp):0{width}d}"
    if dp <= 0:
        return f"{sign}0.{'0' * -dp}{digits}"
    if dp >= len(digits):
        return f"{sign}{digits}{'0' * (dp - len(digits))}"
    return f"{sign}{digits[:dp]}.{digits[dp:]}"


def go_str(value: Any, top: bool = True) -> str:
    """fmt.Sprint of one value (`%v`), which is what `{{ x }}` prints."""
    if value is NO_VALUE or (value is None and top):
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, GoStruct):
        return "{" + " ".join(go_str(v, False) for v in value.fields.values()) + "}"
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda kv: _sort_key(kv[0]))
        return "map[" + " ".join(f"{go_str(k, False)}:{go_str(v, False)}" for k, v in items) + "]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_str(v, False) for v in value) + "]"
    return str(value)


def _sort_key(key: Any) -> tuple[int, Any]:
    if isinstance(key, bool | int | float):
        return (0, key)
    return (1, str(key))


# JSON (encoding/json.Marshal) ---------------------------------------------------------------------

_HEX = "0123456789abcdef"
_SHORT = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def json_string(text: str, escape_html: bool = True) -> str:
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in _SHORT:
            out.append(_SHORT[ch])
        elif code < 0x20 or (escape_html and ch in "<>&"):
            out.append("\\u00" + _HEX[code >> 4] + _HEX[code & 0xF])
        elif code in (0x2028, 0x2029):
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\ufffd")  # Go replaces invalid UTF-8 with U+FFFD
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_json(value: Any, escape_html: bool = True, indent: str | None = None, _level: int = 0) -> str:
    """json.Marshal (indent None) or json.MarshalIndent(v, "", indent) of a template value."""
    if value is None or value is NO_VALUE or type(value) in (NilMap, NilList):
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise GoExecError(f"json: unsupported value: {format_float(value)}")
        return format_float(value, "json")
    if isinstance(value, str):
        return json_string(value, escape_html)
    items: list[tuple[str, Any]] | None = None
    if isinstance(value, GoStruct):
        items = list(value.json_items())
    elif isinstance(value, Mapping):
        items = sorted(((str(k), v) for k, v in value.items()), key=lambda kv: kv[0])
    if items is not None:
        if not items:
            return "{}"
        parts = [
            json_string(k, escape_html)
            + (": " if indent is not None else ":")
            + go_json(v, escape_html, indent, _level + 1)
            for k, v in items
        ]
        return _wrap("{", "}", parts, indent, _level)
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        parts = [go_json(v, escape_html, indent, _level + 1) for v in value]
        return _wrap("[", "]", parts, indent, _level)
    raise GoExecError(f"json: unsupported type: {type(value).__name__}")


def _wrap(open_: str, close: str, parts: list[str], indent: str | None, level: int) -> str:
    if indent is None:
        return open_ + ",".join(parts) + close
    inner = "\n" + indent * (level + 1)
    return open_ + inner + ("," + inner).join(parts) + "\n" + indent * level + close
