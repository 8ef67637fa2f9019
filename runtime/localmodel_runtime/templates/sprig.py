"""Sprig v3.3.0 functions (github.com/Masterminds/sprig), with Sprig's argument order.

Sprig puts the operand last so that pipelines work: `trimPrefix PREFIX STR`, `replace OLD NEW STR`,
`contains SUBSTR STR`. Arguments typed `string` in Go must be strings (Go refuses anything else);
`interface{}` arguments take any value. Integer arithmetic converts with spf13/cast's ToInt64.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from .gobuiltins import MAX_TEXT, check_count, go_quote
from .govalues import NO_VALUE, GoExecError, GoStruct, go_json, go_str, is_empty


def _s(value: Any) -> str:
    if not isinstance(value, str):
        raise GoExecError(f"wrong type for value; expected string; got {type(value).__name__}")
    return value


def _i(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GoExecError(f"wrong type for value; expected int; got {type(value).__name__}")
    return value


def to_int64(value: Any) -> int:
    """spf13/cast ToInt64: numbers truncate, bools are 0/1, strings parse (0 when they do not)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else 0
    if isinstance(value, str):
        text = re.sub(r"\.0*$", "", value) if "." in value else value
        try:
            return int(text, 0)
        except ValueError:
            return 0
    return 0


def strval(value: Any) -> str:
    return value if isinstance(value, str) else go_str(value, top=False)


def _bytes_slice(text: str, start: int, end: int | None) -> str:
    return text.encode("utf-8")[start:end].decode("utf-8", errors="replace")


def _substr(start: Any, end: Any, s: Any) -> str:
    a, b, text = _i(start), _i(end), _s(s)
    n = len(text.encode("utf-8"))
    if a < 0:
        return _bytes_slice(text, 0, b)
    if b < 0 or b > n:
        return _bytes_slice(text, a, None)
    if a > b:
        raise GoExecError(f"runtime error: slice bounds out of range [{a}:{b}]")
    return _bytes_slice(text, a, b)


def _repeat(n: Any, text: Any) -> str:
    count, piece = max(_i(n), 0), _s(text)
    if count * len(piece) > MAX_TEXT:
        raise GoExecError(f"repeat: {count} × {len(piece)} characters is over the limit of {MAX_TEXT}")
    return piece * count


def _until(n: Any) -> list[int]:
    count = check_count(_i(n), "until")
    return list(range(count)) if count >= 0 else list(range(0, count, -1))


def _slice(value: Any, *indexes: Any) -> Any:
    """Sprig's `slice` (it replaces Go's builtin): lists only; an empty list gives nil."""
    items = _list_arg(value, "slice") if isinstance(value, list | tuple) else None
    if items is None:
        raise GoExecError(f"list should be type of slice or array but {type(value).__name__}")
    if not items:
        return None
    start = to_int64(indexes[0]) if indexes else 0
    end = to_int64(indexes[1]) if len(indexes) > 1 else len(items)
    if not 0 <= start <= end <= len(items):
        raise GoExecError(f"runtime error: slice bounds out of range [{start}:{end}]")
    return items[start:end]


def _trunc(c: Any, s: Any) -> str:
    count, text = _i(c), _s(s)
    n = len(text.encode("utf-8"))
    if count < 0 and n + count > 0:
        return _bytes_slice(text, n + count, None)
    if count >= 0 and n > count:
        return _bytes_slice(text, 0, count)
    return text


def _title(s: Any) -> str:
    """strings.Title: upper-case the first letter of every word."""
    out: list[str] = []
    prev_sep = True
    for ch in _s(s):
        out.append(ch.upper() if prev_sep else ch)
        prev_sep = not (ch.isalnum() or ch == "_") and (ord(ch) < 0x80 or ch.isspace() or not ch.isalpha())
    return "".join(out)


def _strslice(value: Any) -> list[str]:
    if value is None or value is NO_VALUE:
        return []
    if isinstance(value, list | tuple):
        return [strval(v) for v in value if v is not None]
    return [strval(value)]


def _dict(*args: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i in range(0, len(args), 2):
        out[strval(args[i])] = args[i + 1] if i + 1 < len(args) else ""
    return out


def _map(value: Any) -> Mapping[str, Any]:
    if isinstance(value, Mapping) and not isinstance(value, GoStruct):
        return value
    raise GoExecError(f"wrong type for value; expected map[string]interface {{}}; got {type(value).__name__}")


def _list_arg(value: Any, name: str) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    raise GoExecError(f"Cannot find {name} on type {type(value).__name__}")


def _first(value: Any) -> Any:
    items = _list_arg(value, "first") if value is not None else []
    return items[0] if items else None


def _last(value: Any) -> Any:
    items = _list_arg(value, "last") if value is not None else []
    return items[-1] if items else None


def _div(a: Any, b: Any) -> int:
    x, y = to_int64(a), to_int64(b)
    if y == 0:
        raise GoExecError("runtime error: integer divide by zero")
    q = abs(x) // abs(y)
    return q if (x >= 0) == (y >= 0) else -q  # Go truncates toward zero


def _mod(a: Any, b: Any) -> int:
    x, y = to_int64(a), to_int64(b)
    if y == 0:
        raise GoExecError("runtime error: integer divide by zero")
    return x - _div(x, y) * y


def _mul(a: Any, *rest: Any) -> int:
    out = to_int64(a)
    for v in rest:
        out *= to_int64(v)
    return out


def _default(default: Any, *given: Any) -> Any:
    if not given or is_empty(given[0]):
        return default
    return given[0]


def _ternary(true_value: Any, false_value: Any, condition: Any) -> Any:
    if not isinstance(condition, bool):
        raise GoExecError("wrong type for value; expected bool")
    return true_value if condition else false_value


def _go_replacement(template: str) -> Callable[[re.Match[str]], str]:
    """Go's regexp Expand syntax (`$1`, `${name}`, `$$`) for re.sub."""

    def expand(match: re.Match[str]) -> str:
        def group(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name = m.group(1) or m.group(2)
            try:
                key: int | str = int(name) if name.isdigit() else name
                return match.group(key) or ""
            except IndexError:
                return ""

        return re.sub(r"\$\$|\$\{(\w+)\}|\$(\w+)", group, template)

    return expand


def _regex(pattern: Any) -> re.Pattern[str]:
    try:
        return re.compile(_s(pattern))
    except re.error as exc:
        raise GoExecError(f"error parsing regexp: {exc}") from None


def _regex_match(pattern: Any, s: Any) -> bool:
    try:
        return re.search(_s(pattern), _s(s)) is not None
    except re.error:
        return False


def _split(sep: Any, orig: Any) -> dict[str, str]:
    return {f"_{i}": part for i, part in enumerate(_split_list(sep, orig))}


def _split_list(sep: Any, orig: Any) -> list[str]:
    s, text = _s(sep), _s(orig)
    return list(text) if s == "" else text.split(s)


def _keys(*dicts: Any) -> list[str]:
    # Go's map order is random; sorted is one of the orders Go may produce, and is reproducible.
    return sorted({k for d in dicts for k in _map(d)})


def _trim_all(cutset: Any, s: Any) -> str:
    return _s(s).strip(_s(cutset))


def _indent(spaces: Any, s: Any) -> str:
    pad = " " * _i(spaces)
    return pad + _s(s).replace("\n", "\n" + pad)


SPRIG: dict[str, Callable[..., Any]] = {
    # JSON
    "toJson": lambda v: _json_or_empty(v, True, None),
    "toRawJson": lambda v: _json_or_empty(v, False, None),
    "toPrettyJson": lambda v: _json_or_empty(v, True, "  "),
    "mustToJson": lambda v: go_json(v),
    # defaults
    "default": _default,
    "empty": is_empty,
    "coalesce": lambda *v: next((x for x in v if not is_empty(x)), None),
    "ternary": _ternary,
    # strings
    "trim": lambda s: _s(s).strip(
        " \t\n\r\v\f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
        "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
    ),
    "trimAll": _trim_all,
    "trimPrefix": lambda p, s: _s(s).removeprefix(_s(p)),
    "trimSuffix": lambda p, s: _s(s).removesuffix(_s(p)),
    "upper": lambda s: _s(s).upper(),
    "lower": lambda s: _s(s).lower(),
    "title": _title,
    "repeat": _repeat,
    "replace": lambda old, new, s: _s(s).replace(_s(old), _s(new)),
    "contains": lambda sub, s: _s(sub) in _s(s),
    "hasPrefix": lambda p, s: _s(s).startswith(_s(p)),
    "hasSuffix": lambda p, s: _s(s).endswith(_s(p)),
    "quote": lambda *v: " ".join(go_quote(strval(x)) for x in v if x is not None),
    "squote": lambda *v: " ".join(f"'{strval(x)}'" for x in v if x is not None),
    "cat": lambda *v: " ".join(strval(x) for x in v if x is not None),
    "indent": _indent,
    "nindent": lambda n, s: "\n" + _indent(n, s),
    "substr": _substr,
    "trunc": _trunc,
    "split": _split,
    "splitList": _split_list,
    "join": lambda sep, v: _s(sep).join(_strslice(v)),
    "toString": strval,
    "toStrings": _strslice,
    "b64enc": lambda s: base64.b64encode(_s(s).encode("utf-8")).decode("ascii"),
    "b64dec": lambda s: base64.b64decode(_s(s)).decode("utf-8", errors="replace"),
    "nospace": lambda s: "".join(_s(s).split()),
    # lists and dicts
    "list": lambda *v: list(v),
    "dict": _dict,
    "get": lambda d, k: _map(d).get(_s(k), ""),
    "hasKey": lambda d, k: _s(k) in _map(d),
    "keys": _keys,
    "values": lambda d: [v for _, v in sorted(_map(d).items())],
    "first": _first,
    "last": _last,
    "rest": lambda v: _list_arg(v, "rest")[1:],
    "initial": lambda v: _list_arg(v, "initial")[:-1],
    "append": lambda v, x: [*_list_arg(v, "append"), x],
    "prepend": lambda v, x: [x, *_list_arg(v, "prepend")],
    "reverse": lambda v: _list_arg(v, "reverse")[::-1],
    "has": lambda x, v: x in _list_arg(v, "has"),
    "concat": lambda *vs: [x for v in vs for x in _list_arg(v, "concat")],
    "sortAlpha": lambda v: sorted(_strslice(v)),
    "slice": _slice,
    "until": _until,
    # numbers
    "add": lambda *v: sum(to_int64(x) for x in v),
    "add1": lambda v: to_int64(v) + 1,
    "sub": lambda a, b: to_int64(a) - to_int64(b),
    "mul": _mul,
    "div": _div,
    "mod": _mod,
    "max": lambda a, *r: max([to_int64(a), *(to_int64(x) for x in r)]),
    "min": lambda a, *r: min([to_int64(a), *(to_int64(x) for x in r)]),
    "int": to_int64,
    "int64": to_int64,
    "atoi": lambda s: to_int64(_s(s)) if re.fullmatch(r"[+-]?\d+", _s(s)) else 0,
    # regular expressions (Python's engine: RE2 syntax agrees for the common subset)
    "regexMatch": _regex_match,
    "regexFind": lambda r, s: m.group() if (m := _regex(r).search(_s(s))) else "",
    "regexFindAll": lambda r, s, n: [m.group() for m in _regex(r).finditer(_s(s))][
        : None if _i(n) < 0 else n
    ],
    "regexReplaceAll": lambda r, s, repl: _regex(r).sub(_go_replacement(_s(repl)), _s(s)),
    "regexReplaceAllLiteral": lambda r, s, repl: _regex(r).sub(lambda _m: _s(repl), _s(s)),
    "regexSplit": lambda r, s, n: _regex(r).split(_s(s), maxsplit=0 if _i(n) < 0 else max(_i(n) - 1, 0)),
}


def _json_or_empty(value: Any, escape_html: bool, indent: str | None) -> str:
    # Sprig's toJson ignores marshalling errors and returns "".
    try:
        return go_json(value, escape_html, indent)
    except GoExecError:
        return ""
