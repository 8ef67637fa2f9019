"""Go `text/template` builtins and the runtime helpers the generated Jinja calls (`go_field`, …)."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .govalues import NO_VALUE, GoExecError, GoStruct, format_float, go_str

# Runtime helpers --------------------------------------------------------------------------------


def go_field(value: Any, *names: str) -> Any:
    """`.A.B`: struct fields (missing: error), map keys (missing: `<no value>`)."""
    for name in names:
        if isinstance(value, GoStruct):
            value = value.lookup(name)
        elif isinstance(value, Mapping):
            value = value.get(name, NO_VALUE)
        elif value is NO_VALUE:
            value = NO_VALUE  # Go: a field of a missing key is still missing
        elif value is None:
            raise GoExecError(f"nil pointer evaluating interface {{}}.{name}")
        else:
            raise GoExecError(f"can't evaluate field {name} in type {_type_name(value)}")
    return value


def go_range(value: Any) -> Iterator[tuple[Any, Any]]:
    """`range`: (index, element) of a list, (key, value) of a map in key order, 0..n-1 of an int."""
    if value is None or value is NO_VALUE:
        return iter(())
    if isinstance(value, GoStruct):
        raise GoExecError(f"range can't iterate over {go_str(value)}")
    if isinstance(value, Mapping):
        return iter(sorted(value.items(), key=lambda kv: (str(type(kv[0])), kv[0])))
    if isinstance(value, list | tuple):
        return enumerate(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return ((i, i) for i in range(check_count(value, "range")))
    raise GoExecError(f"range can't iterate over {go_str(value)}")


MAX_ITEMS = 100_000
"""The most items `range N` and Sprig's `until` make (Jinja's sandbox bounds its own range alike)."""
MAX_TEXT = 1 << 20
"""The longest string Sprig's `repeat` makes: a template must not allocate without bound."""


def check_count(n: int, what: str) -> int:
    if abs(n) > MAX_ITEMS:
        raise GoExecError(f"{what} {n}: more than {MAX_ITEMS} items")
    return n


def go_print(value: Any) -> str:
    return go_str(value)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, GoStruct):
        return value.type_name
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    if isinstance(value, list | tuple):
        return "[]interface {}"
    return type(value).__name__


# Comparison -------------------------------------------------------------------------------------


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if value is None or value is NO_VALUE:
        return "nil"
    return "other"


def _basic_eq(a: Any, b: Any) -> bool:
    ka, kb = _kind(a), _kind(b)
    if "other" in (ka, kb):
        raise GoExecError("non-comparable type")
    if "nil" in (ka, kb):
        return ka == kb
    if ka != kb:
        raise GoExecError("incompatible types for comparison")
    return bool(a == b)


def go_eq(arg1: Any, *args: Any) -> bool:
    if not args:
        raise GoExecError("missing argument for comparison")
    return any(_basic_eq(arg1, arg) for arg in args)


def go_ne(a: Any, b: Any) -> bool:
    return not _basic_eq(a, b)


def _ordered(a: Any, b: Any) -> tuple[Any, Any]:
    ka, kb = _kind(a), _kind(b)
    if ka != kb or ka not in ("int", "float", "string"):
        raise GoExecError("incompatible types for comparison" if ka != kb else "invalid type for comparison")
    return a, b


def go_lt(a: Any, b: Any) -> bool:
    x, y = _ordered(a, b)
    return bool(x < y)


def go_le(a: Any, b: Any) -> bool:
    x, y = _ordered(a, b)
    return bool(x <= y)


def go_gt(a: Any, b: Any) -> bool:
    x, y = _ordered(a, b)
    return bool(x > y)


def go_ge(a: Any, b: Any) -> bool:
    x, y = _ordered(a, b)
    return bool(x >= y)


# Collections ------------------------------------------------------------------------------------


def go_len(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8"))  # Go: bytes
    if isinstance(value, list | tuple | Mapping) and not isinstance(value, GoStruct):
        return len(value)
    raise GoExecError(f"len of type {_type_name(value)}")


def go_index(item: Any, *indexes: Any) -> Any:
    for index in indexes:
        if isinstance(item, Mapping) and not isinstance(item, GoStruct):
            item = item.get(index)  # Go: a missing key gives the element type's zero value
        elif isinstance(item, list | tuple | str):
            if not isinstance(index, int) or isinstance(index, bool):
                raise GoExecError(f"cannot index slice/array with type {_type_name(index)}")
            seq: Any = item.encode("utf-8") if isinstance(item, str) else item
            if not 0 <= index < len(seq):
                raise GoExecError(f"error calling index: index out of range: {index}")
            item = seq[index]
        elif item is None or item is NO_VALUE:
            raise GoExecError("error calling index: index of untyped nil")
        else:
            raise GoExecError(f"can't index item of type {_type_name(item)}")
    return item


# Printing ---------------------------------------------------------------------------------------


def go_sprint(*args: Any) -> str:
    """fmt.Sprint: a space between operands when neither is a string."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(go_str(arg, top=False))
    return "".join(out)


def go_sprintln(*args: Any) -> str:
    return " ".join(go_str(a, top=False) for a in args) + "\n"


_VERB = re.compile(r"%([-+# 0]*)(\d+|\*)?(?:\.(\d*|\*))?([a-zA-Z%])")


def go_sprintf(fmt: str, *args: Any) -> str:
    """fmt.Sprintf for the verbs templates use: %s %d %v %q %f %e %g %x %X %t %c %%, width/precision."""
    out: list[str] = []
    arg_i = 0
    pos = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        flags, width_s, prec_s, verb = m.groups()
        if verb == "%":
            out.append("%")
            continue
        width = prec = None
        if width_s == "*":
            width, arg_i = int(args[arg_i]) if arg_i < len(args) else 0, arg_i + 1
        elif width_s:
            width = int(width_s)
        if prec_s == "*":
            prec, arg_i = int(args[arg_i]) if arg_i < len(args) else 0, arg_i + 1
        elif prec_s is not None:
            prec = int(prec_s or "0")
        if arg_i >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[arg_i]
        arg_i += 1
        text = _format_one(verb, flags, prec, arg)
        if width is not None and len(text) < width:
            if "-" in flags:
                text = text.ljust(width)
            elif "0" in flags and verb in "dfegxX" and text[:1] in "+-":
                text = text[0] + text[1:].rjust(width - 1, "0")
            else:
                text = text.rjust(width, "0" if "0" in flags and verb in "dfegxX" else " ")
        out.append(text)
    out.append(fmt[pos:])
    if arg_i < len(args):
        extra = ", ".join(f"{_type_name(a)}={go_str(a, top=False)}" for a in args[arg_i:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _format_one(verb: str, flags: str, prec: int | None, arg: Any) -> str:
    if arg is None:
        return "<nil>" if verb == "v" else f"%!{verb}(<nil>)"
    bad = f"%!{verb}({_type_name(arg)}={go_str(arg, top=False)})"
    is_int = isinstance(arg, int) and not isinstance(arg, bool)
    if verb == "v":
        return go_str(arg, top=False)
    if verb == "s":
        if isinstance(arg, str | list | tuple | Mapping) or arg is None:
            text = go_str(arg, top=False)
            return text[:prec] if prec is not None and isinstance(arg, str) else text
        return bad
    if verb == "q":
        if isinstance(arg, str):
            return go_quote(arg)
        if is_int:
            return "'" + go_quote(chr(arg))[1:-1].replace("'", "\\'").replace('\\"', '"') + "'"
        return bad
    if verb == "t":
        return go_str(arg) if isinstance(arg, bool) else bad
    if verb in "dbo":
        if not is_int:
            return bad
        text = format(arg, {"d": "d", "b": "b", "o": "o"}[verb])
        return ("+" + text) if "+" in flags and arg >= 0 else text
    if verb in "xX":
        if is_int:
            text = format(arg, "x")
        elif isinstance(arg, str):
            text = arg.encode("utf-8").hex()
        else:
            return bad
        return text.upper() if verb == "X" else text
    if verb == "c":
        return chr(arg) if is_int else bad
    if verb in "feEgG":
        if not isinstance(arg, float) or isinstance(arg, bool):
            return bad
        if verb in "gG" and prec is None:
            text = format_float(arg)
        else:
            text = format(arg, f".{6 if prec is None else prec}{verb}")
            text = re.sub(r"e([+-])(\d)$", r"e\g<1>0\2", text)
        return ("+" + text) if "+" in flags and arg >= 0 else text
    return f"%!{verb}({_type_name(arg)}={go_str(arg, top=False)})"


def go_quote(text: str) -> str:
    """strconv.Quote: Go escapes, printable Unicode left as is."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(ch)])
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out) + '"'


def go_html(*args: Any) -> str:
    text = args[0] if len(args) == 1 and isinstance(args[0], str) else go_sprint(*args)
    return (
        text.replace("&", "&amp;")
        .replace("'", "&#39;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("\x00", "\ufffd")
    )


def go_js(*args: Any) -> str:
    text = args[0] if len(args) == 1 and isinstance(args[0], str) else go_sprint(*args)
    out: list[str] = []
    for ch in text:
        if ch in "\\'\"":
            out.append("\\" + ch)
        elif ch in "<>&=" or ord(ch) < 0x20 or not ch.isprintable():
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


def go_urlquery(*args: Any) -> str:
    text = args[0] if len(args) == 1 and isinstance(args[0], str) else go_sprint(*args)
    return urllib.parse.quote_plus(text, safe="-_.~")


BUILTINS: dict[str, Callable[..., Any]] = {
    "eq": go_eq,
    "ne": go_ne,
    "lt": go_lt,
    "le": go_le,
    "gt": go_gt,
    "ge": go_ge,
    "len": go_len,
    "index": go_index,
    "print": go_sprint,
    "printf": go_sprintf,
    "println": go_sprintln,
    "html": go_html,
    "js": go_js,
    "urlquery": go_urlquery,
}
"""Builtins other than `and`, `or` and `not`, which the translator turns into Jinja operators."""
