"""Code generation: the Go template AST → Jinja2 source, run once when a template is loaded.

Every Go construct becomes a call to a runtime helper (``go_field``, ``go_range``, ``f_printf``, …) so
that Go semantics (struct vs map field access, printing, comparison) live in Python, not in Jinja.
`.` is the Jinja variable ``go_dot`` and `$` is ``go_root``. Text that Jinja could misread (braces,
carriage returns) and non-trivial literals go through a per-template constants list ``go_k``.
"""

from __future__ import annotations

import re
from typing import Any

from .golex import GoSyntaxError
from .goparse import (
    Control,
    Dot,
    Expr,
    Ident,
    Literal,
    LoopJump,
    Node,
    Output,
    Pipe,
    Root,
    SubPipe,
    TextNode,
    VarDecl,
    VarRef,
)

_PLAIN_TEXT = re.compile(r"[^{}\r#%]*")
_PLAIN_STRING = re.compile(r"[^\x00-\x1f\x7f-\U0010ffff'\\{}]*")


class JinjaWriter:
    def __init__(self) -> None:
        self.constants: list[Any] = []
        self.counter = 0
        self.out: list[str] = []

    def const(self, value: Any) -> str:
        self.constants.append(value)
        return f"go_k[{len(self.constants) - 1}]"

    def literal(self, value: Any) -> str:
        if value is None:
            return "none"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value) if value >= 0 else f"({value})"
        if (
            isinstance(value, str)
            and _PLAIN_STRING.fullmatch(value)
            and "'" not in value
            and "\\" not in value
        ):
            return f"'{value}'"
        return self.const(value)

    # statements -----------------------------------------------------------------------------
    def nodes(self, nodes: list[Node]) -> None:
        for node in nodes:
            self.node(node)

    def node(self, node: Node) -> None:
        if isinstance(node, TextNode):
            if _PLAIN_TEXT.fullmatch(node.text):
                self.out.append(node.text)
            else:
                self.out.append("{{ " + self.const(node.text) + " }}")
        elif isinstance(node, Output):
            if node.pipe.decls:
                self.declare(node.pipe, self.pipe(node.pipe))
            else:
                self.out.append("{{ go_print(" + self.pipe(node.pipe) + ") }}")
        elif isinstance(node, LoopJump):
            self.out.append("{% " + node.kind + " %}")
        else:
            self.control(node)

    def declare(self, pipe: Pipe, value: str) -> None:
        decl = pipe.decls[0]
        if pipe.assign:
            target = f"{decl.jinja}.v" if decl.assigned else decl.jinja
            self.out.append(f"{{% set {target} = {value} %}}")
        elif decl.assigned:
            self.out.append(f"{{% set {decl.jinja} = namespace(v={value}) %}}")
        else:
            self.out.append(f"{{% set {decl.jinja} = {value} %}}")

    def control(self, node: Control) -> None:
        value = self.pipe(node.pipe)
        if node.kind == "range":
            self.counter += 1
            key = f"go_key_{self.counter}"
            self.out.append(f"{{% for {key}, go_dot in go_range({value}) %}}")
            decls = node.pipe.decls
            if len(decls) == 1:
                self.bind(decls[0], "go_dot")
            elif len(decls) == 2:
                self.bind(decls[0], key)
                self.bind(decls[1], "go_dot")
            self.nodes(node.body)
            if node.else_body is not None:
                self.out.append("{% else %}")
                self.nodes(node.else_body)
            self.out.append("{% endfor %}")
            return
        if node.pipe.decls:
            self.declare(node.pipe, value)
            value = self.var(node.pipe.decls[0])
        if node.kind == "with":
            self.counter += 1
            tmp = f"go_with_{self.counter}"
            self.out.append(f"{{% set {tmp} = {value} %}}{{% if {tmp} %}}{{% with go_dot = {tmp} %}}")
            self.nodes(node.body)
            self.out.append("{% endwith %}")
        else:
            self.out.append(f"{{% if {value} %}}")
            self.nodes(node.body)
        if node.else_body is not None:
            self.out.append("{% else %}")
            self.nodes(node.else_body)
        self.out.append("{% endif %}")

    def bind(self, decl: VarDecl, source: str) -> None:
        if decl.assigned:
            self.out.append(f"{{% set {decl.jinja} = namespace(v={source}) %}}")
        else:
            self.out.append(f"{{% set {decl.jinja} = {source} %}}")

    # expressions ----------------------------------------------------------------------------
    def pipe(self, pipe: Pipe) -> str:
        result: str | None = None
        for cmd in pipe.cmds:
            result = self.command(cmd, result)
        assert result is not None
        return result

    def command(self, cmd: list[Expr], final: str | None) -> str:
        head = cmd[0]
        if not isinstance(head, Ident):
            return self.expr(head)
        args = [self.expr(a) for a in cmd[1:]]
        if final is not None:
            args.append(final)
        if head.name in ("and", "or"):
            if not args:
                raise GoSyntaxError(f"wrong number of args for {head.name}: want at least 1 got 0", head.pos)
            # Jinja's and/or return an operand and short-circuit, like Go's; truthiness agrees because
            # Go structs and the missing value define __bool__.
            return "(" + f" {head.name} ".join(args) + ")"
        if head.name == "not":
            if len(args) != 1:
                raise GoSyntaxError(f"wrong number of args for not: want 1 got {len(args)}", head.pos)
            return f"(not {args[0]})"
        return f"f_{head.name}(" + ", ".join(args) + ")"

    def expr(self, expr: Expr) -> str:
        if isinstance(expr, Dot):
            return "go_dot"
        if isinstance(expr, Root):
            return "go_root"
        if isinstance(expr, VarRef):
            return self.var(expr.decl)
        if isinstance(expr, Literal):
            return self.literal(expr.value)
        if isinstance(expr, Ident):
            return self.command([expr], None)
        if isinstance(expr, SubPipe):
            return "(" + self.pipe(expr.pipe) + ")"
        receiver = self.expr(expr.receiver)
        return f"go_field({receiver}, " + ", ".join(f"'{n}'" for n in expr.names) + ")"

    def var(self, decl: VarDecl) -> str:
        return f"{decl.jinja}.v" if decl.assigned else decl.jinja


def to_jinja(nodes: list[Node]) -> tuple[str, list[Any]]:
    """Jinja source and the constants it refers to as ``go_k[i]``."""
    writer = JinjaWriter()
    writer.nodes(nodes)
    return "".join(writer.out), writer.constants
