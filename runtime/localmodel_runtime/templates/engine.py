"""Loading templates: Go templates are translated to Jinja2 once; native Jinja2 is used as it is.

Everything runs in Jinja's ImmutableSandboxedEnvironment, with autoescape off. Go-translated
templates use ``keep_trailing_newline=True`` and no Jinja block trimming (Go's trim markers are applied
by the translator). Hugging Face chat templates get HF's own settings (see :mod:`.hf`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from localmodel_runtime.errors import LocalModelException

from .gobuiltins import BUILTINS, go_field, go_print, go_range
from .golex import GoSyntaxError
from .goparse import parse_go
from .gotojinja import to_jinja
from .govalues import NO_VALUE, GoExecError, GoStruct
from .sprig import SPRIG

# Builtins that take reflect.Values see a missing map key as such; functions with Go-typed parameters
# (`...any`, `string`, …) receive it as nil, which is how Go passes an invalid value to them.
_REFLECT_BUILTINS = frozenset({"eq", "ne", "lt", "le", "gt", "ge", "len", "index"})


def _missing_as_nil(fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        return fn(*(None if a is NO_VALUE else a for a in args))

    return call


FUNCTIONS: dict[str, Callable[..., Any]] = {
    name: fn if name in _REFLECT_BUILTINS else _missing_as_nil(fn)
    for name, fn in {**BUILTINS, **SPRIG}.items()
}
FUNCTION_NAMES = frozenset([*FUNCTIONS, "and", "or", "not"])


class TemplateError(LocalModelException, ValueError):
    """A template that cannot be loaded; names the template (`template.chat`), the line and the column."""

    def __init__(
        self, template: str, message: str, line: int | None = None, column: int | None = None
    ) -> None:
        self.template = template
        self.message = message
        self.line = line
        self.column = column
        where = "" if line is None else f" line {line}" + ("" if column is None else f", column {column}")
        super().__init__(f"{template}:{where}: {message}" if where else f"{template}: {message}")


class RenderError(LocalModelException):
    """A template failed while rendering (LocalAI then falls back to the untemplated text)."""


def hf_tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: Any = None,
    sort_keys: bool = False,
) -> str:
    """Hugging Face's `tojson` filter: plain json.dumps, unlike Jinja's HTML-escaping built-in."""
    return json.dumps(
        value,
        ensure_ascii=ensure_ascii,
        indent=indent,
        separators=separators,
        sort_keys=sort_keys,
        default=_json_default,
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, GoStruct):
        return dict(value.json_items())
    if value is NO_VALUE:
        return None
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def raise_exception(message: str) -> None:
    raise jinja2.TemplateError(message)


def strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class GenerationTag(Extension):
    """`{% generation %}…{% endgeneration %}` (HF's assistant-mask marker): renders its body."""

    tags = {"generation"}

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


def _sandbox(**options: Any) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        autoescape=False, extensions=["jinja2.ext.loopcontrols", GenerationTag], **options
    )
    env.filters["tojson"] = hf_tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


GO_ENV = _sandbox(
    keep_trailing_newline=True, trim_blocks=False, lstrip_blocks=False, undefined=jinja2.StrictUndefined
)
GO_ENV.globals.update(go_field=go_field, go_print=go_print, go_range=go_range)
GO_ENV.globals.update({f"f_{name}": fn for name, fn in FUNCTIONS.items()})
JINJA_ENV = _sandbox(keep_trailing_newline=True, trim_blocks=False, lstrip_blocks=False)
HF_ENV = _sandbox(trim_blocks=True, lstrip_blocks=True)

_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)
_GO_ACTION = re.compile(
    r"^(?:/\*|(?:if|else|end|range|with|define|template|block|break|continue)\b|(?:nil|true|false)$)"
    r"|(?:^|[\s(|])[.$]"
)
# `{{ printf "%d" 1 }}`, `{{ list }}`: a Go function name, then nothing or space-separated arguments.
_GO_CALL = re.compile(r"^([A-Za-z_]\w*)(?:\s*$|\s+(?:-\d|[^\s=!<>+*/%|~\[\].(-]))")


def _is_go_action(action: str) -> bool:
    if _GO_ACTION.search(action):
        return True
    call = _GO_CALL.match(action)
    return bool(call and call.group(1) in FUNCTION_NAMES)


def looks_like_go(text: str) -> bool | None:
    """True for Go-style actions (`.Field`, `$x`, `if`/`range`/`end`, Go calls), None: no actions."""
    actions = _ACTION.findall(text)
    if not actions:
        return None
    return any(_is_go_action(a) for a in actions)


class PromptTemplate:
    """One loaded template: Go (translated) or native Jinja2."""

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        go = looks_like_go(source)
        jinja_tags = "{%" in source or "{#" in source
        self.is_go = True
        if not go and (jinja_tags or go is False):
            # Jinja syntax, or `{{ name }}` actions only: try Jinja first, Go if Jinja refuses it.
            try:
                self.template = JINJA_ENV.from_string(source)
                self.is_go = False
                self.jinja_source = source
                return
            except jinja2.TemplateSyntaxError as exc:
                if jinja_tags:
                    raise TemplateError(name, exc.message or str(exc), exc.lineno, None) from exc
        self.jinja_source, constants = self._translate()
        try:
            self.template = GO_ENV.from_string(self.jinja_source, globals={"go_k": constants})
        except jinja2.TemplateSyntaxError as exc:  # a translator bug, not the user's
            raise TemplateError(name, f"internal translation error: {exc}", 1, 1) from exc

    def _translate(self) -> tuple[str, list[Any]]:
        try:
            return to_jinja(parse_go(self.source, FUNCTION_NAMES))
        except GoSyntaxError as exc:
            line = self.source.count("\n", 0, exc.pos) + 1
            column = exc.pos - (self.source.rfind("\n", 0, exc.pos) + 1) + 1
            raise TemplateError(self.name, exc.message, line, column) from exc

    def render(self, data: GoStruct, jinja_vars: Mapping[str, Any] | None = None) -> str:
        """Render with Go data (`.`); a native Jinja template sees the fields as variables."""
        try:
            if self.is_go:
                return self.template.render(go_dot=data, go_root=data)
            return self.template.render({**data.fields, **(jinja_vars or {})})
        except (
            GoExecError,
            jinja2.TemplateError,
            ArithmeticError,
            LookupError,
            TypeError,
            ValueError,
        ) as exc:
            raise RenderError(f"{self.name}: {exc}") from exc
