"""Parser for Go `text/template`: tokens from :mod:`.golex` → a small AST.

Checks what Go's parser checks at parse time (unknown functions, undefined variables, misplaced
`else`/`end`/`break`, arguments given to a field), so that a bad template fails when it is loaded.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from .golex import Action, GoSyntaxError, Text, Token, split_template


@dataclass
class VarDecl:
    name: str  # Go name without `$`
    jinja: str  # unique Jinja name (Go scopes shadow; Jinja `if` blocks do not)
    assigned: bool = False  # reassigned with `=`: kept in a Jinja namespace so loops can update it


# Expressions
@dataclass
class Dot:
    pass


@dataclass
class Root:  # `$`
    pass


@dataclass
class VarRef:
    decl: VarDecl


@dataclass
class Ident:
    name: str
    pos: int


@dataclass
class Literal:
    value: Any


@dataclass
class Chain:  # receiver.Field1.Field2
    receiver: Expr
    names: list[str]


@dataclass
class SubPipe:
    pipe: Pipe


Expr = Dot | Root | VarRef | Ident | Literal | Chain | SubPipe


@dataclass
class Pipe:
    pos: int
    decls: list[VarDecl] = field(default_factory=list)
    assign: bool = False
    cmds: list[list[Expr]] = field(default_factory=list)


# Statements
@dataclass
class TextNode:
    text: str


@dataclass
class Output:
    pipe: Pipe


@dataclass
class Control:
    kind: str  # if range with
    pipe: Pipe
    body: list[Node]
    else_body: list[Node] | None = None


@dataclass
class LoopJump:
    kind: str  # break continue


Node = TextNode | Output | Control | LoopJump


class _Parser:
    def __init__(self, text: str, functions: Collection[str]) -> None:
        self.items = split_template(text)
        self.index = 0
        self.functions = functions
        self.scopes: list[list[VarDecl]] = [[]]
        self.counter = 0
        self.loop_depth = 0

    # statements -----------------------------------------------------------------------------
    def parse(self) -> list[Node]:
        body, stop = self.item_list()
        if stop is not None:
            raise GoSyntaxError(f"unexpected {{{{{stop.tokens[0].value}}}}}", stop.pos)
        return body

    def item_list(self) -> tuple[list[Node], Action | None]:
        """Parse nodes up to `{{else}}`/`{{end}}` (returned) or the end of the template (None)."""
        nodes: list[Node] = []
        while self.index < len(self.items):
            item = self.items[self.index]
            self.index += 1
            if isinstance(item, Text):
                nodes.append(TextNode(item.text))
                continue
            if not item.tokens:
                raise GoSyntaxError("missing value for command", item.pos)
            head = item.tokens[0]
            if head.kind == "keyword":
                if head.value in ("else", "end"):
                    return nodes, item
                nodes.append(self.keyword(item, head))
            else:
                nodes.append(Output(self.pipeline(item.tokens, item.pos, "command")))
        return nodes, None

    def keyword(self, item: Action, head: Token) -> Node:
        if head.value in ("if", "range", "with"):
            return self.control(head.value, item.tokens[1:], item.pos)
        if head.value in ("break", "continue"):
            if self.loop_depth == 0:
                raise GoSyntaxError(f"{{{{{head.value}}}}} outside {{{{range}}}}", item.pos)
            if len(item.tokens) > 1:
                raise GoSyntaxError(f"unexpected {item.tokens[1].value!r} in {head.value}", item.pos)
            return LoopJump(head.value)
        if head.value == "nil":
            raise GoSyntaxError("nil is not a command", head.pos)
        raise GoSyntaxError(f"{{{{{head.value}}}}} is not supported in prompt templates", item.pos)

    def control(self, kind: str, tokens: list[Token], pos: int) -> Control:
        self.scopes.append([])
        try:
            pipe = self.pipeline(tokens, pos, kind)
            if kind == "range":
                self.loop_depth += 1
            body, stop = self.item_list()
            if kind == "range":
                self.loop_depth -= 1
            if stop is None:
                raise GoSyntaxError(f"unexpected EOF: {{{{{kind}}}}} has no {{{{end}}}}", pos)
            node = Control(kind, pipe, body)
            if stop.tokens[0].value == "end":
                self._expect_bare(stop)
                return node
            rest = stop.tokens[1:]
            if rest and rest[0].kind == "keyword" and rest[0].value in ("if", "with") and kind != "range":
                if rest[0].value != kind:
                    raise GoSyntaxError(f"{{{{else {rest[0].value}}}}} inside {{{{{kind}}}}}", stop.pos)
                # `{{else if p}}` is `{{else}}{{if p}}…{{end}}{{end}}`, sharing the closing `{{end}}`.
                node.else_body = [self.control(kind, rest[1:], stop.pos)]
                return node
            self._expect_bare(stop)
            node.else_body, stop = self.item_list()
            if stop is None or stop.tokens[0].value != "end":
                raise GoSyntaxError(f"expected {{{{end}}}} to close {{{{{kind}}}}}", pos)
            self._expect_bare(stop)
            return node
        finally:
            self.scopes.pop()

    def _expect_bare(self, item: Action) -> None:
        if len(item.tokens) > 1:
            raise GoSyntaxError(f"unexpected {item.tokens[1].value!r} in {item.tokens[0].value}", item.pos)

    # pipelines ------------------------------------------------------------------------------
    def pipeline(self, tokens: list[Token], pos: int, context: str) -> Pipe:
        if not tokens:
            raise GoSyntaxError(f"missing value for {context}", pos)
        pipe = Pipe(pos)
        i = self._declarations(tokens, pipe, context)
        i = self._commands(tokens, i, pipe, context)
        if i != len(tokens):
            raise GoSyntaxError(f"unexpected {tokens[i].value!r} in {context}", tokens[i].pos)
        return pipe

    def _declarations(self, tokens: list[Token], pipe: Pipe, context: str) -> int:
        names: list[Token] = []
        i = 0
        if len(tokens) > 1 and tokens[0].kind == "var" and tokens[1].kind in (":=", "=", ","):
            names.append(tokens[0])
            i = 1
            if tokens[1].kind == ",":
                if context != "range" or len(tokens) < 4 or tokens[2].kind != "var":
                    raise GoSyntaxError("too many declarations", tokens[1].pos)
                names.append(tokens[2])
                i = 3
            if i >= len(tokens) or tokens[i].kind not in (":=", "="):
                raise GoSyntaxError("expected := or = after variables", tokens[0].pos)
            pipe.assign = tokens[i].kind == "="
            i += 1
        for tok in names:
            if pipe.assign:
                decl = self.lookup(tok)
                decl.assigned = True
            else:
                self.counter += 1
                decl = VarDecl(tok.value[1:], f"v_{tok.value[1:]}_{self.counter}")
            pipe.decls.append(decl)
        # Go declares the variables after parsing the pipeline; the value cannot refer to them.
        return i

    def _commands(self, tokens: list[Token], i: int, pipe: Pipe, context: str) -> int:
        while True:
            cmd: list[Expr] = []
            while i < len(tokens) and tokens[i].kind not in ("|", ")"):
                if cmd and not tokens[i].spaced:
                    raise GoSyntaxError(f"unexpected {tokens[i].value!r} in operand", tokens[i].pos)
                expr, i = self.operand(tokens, i)
                cmd.append(expr)
            if not cmd:
                pos = tokens[i].pos if i < len(tokens) else pipe.pos
                raise GoSyntaxError(f"missing value for {context}", pos)
            self._check_command(cmd, bool(pipe.cmds), pipe.pos)
            pipe.cmds.append(cmd)
            if i < len(tokens) and tokens[i].kind == "|":
                i += 1
                continue
            if not pipe.assign:
                for decl in pipe.decls:
                    self.scopes[-1].append(decl)
            return i

    def _check_command(self, cmd: list[Expr], piped: bool, pos: int) -> None:
        head = cmd[0]
        if isinstance(head, Ident):
            return
        if len(cmd) > 1 or piped:
            raise GoSyntaxError("can't give argument to non-function", pos)
        if isinstance(head, Literal) and head.value is None:
            raise GoSyntaxError("nil is not a command", pos)

    def operand(self, tokens: list[Token], i: int) -> tuple[Expr, int]:
        tok = tokens[i]
        i += 1
        expr: Expr
        if tok.kind == "field":
            expr = Chain(Dot(), [tok.value])
        elif tok.kind == "dot":
            expr = Dot()
        elif tok.kind == "var":
            expr = Root() if tok.value == "$" else VarRef(self.lookup(tok))
        elif tok.kind == "ident":
            if tok.value not in self.functions:
                raise GoSyntaxError(f'function "{tok.value}" not defined', tok.pos)
            expr = Ident(tok.value, tok.pos)
        elif tok.kind in ("string", "rawstring", "char", "number", "bool", "nil"):
            expr = Literal(_literal(tok))
        elif tok.kind == "(":
            j = self._commands_in_parens(tokens, i)
            sub = Pipe(tok.pos)
            self._commands(tokens[i:j], 0, sub, "parenthesized pipeline")
            expr, i = SubPipe(sub), j + 1
        else:
            raise GoSyntaxError(f"unexpected {tok.value!r} in operand", tok.pos)
        names: list[str] = []
        while i < len(tokens) and tokens[i].kind == "field" and not tokens[i].spaced:
            if isinstance(expr, Ident | Literal):
                raise GoSyntaxError(f"unexpected . after term {tok.value!r}", tokens[i].pos)
            names.append(tokens[i].value)
            i += 1
        if names:
            expr = Chain(expr.receiver, expr.names + names) if isinstance(expr, Chain) else Chain(expr, names)
        return expr, i

    def _commands_in_parens(self, tokens: list[Token], i: int) -> int:
        depth = 1
        for j in range(i, len(tokens)):
            depth += {"(": 1, ")": -1}.get(tokens[j].kind, 0)
            if depth == 0:
                return j
        raise GoSyntaxError("unclosed left paren", tokens[i - 1].pos)

    def lookup(self, tok: Token) -> VarDecl:
        name = tok.value[1:]
        for scope in reversed(self.scopes):
            for decl in reversed(scope):
                if decl.name == name:
                    return decl
        raise GoSyntaxError(f'undefined variable "{tok.value}"', tok.pos)


def _literal(tok: Token) -> Any:
    if tok.kind == "string":
        return _unquote(tok.value[1:-1], tok.pos)
    if tok.kind == "rawstring":
        return tok.value.replace("\r", "")  # Go drops carriage returns from raw strings
    if tok.kind == "char":
        text = _unquote(tok.value[1:-1], tok.pos)
        if len(text) != 1:
            raise GoSyntaxError(f"malformed character constant: {tok.value}", tok.pos)
        return ord(text)
    if tok.kind == "bool":
        return tok.value == "true"
    if tok.kind == "nil":
        return None
    return _number(tok)


def _number(tok: Token) -> int | float:
    text = tok.value.replace("_", "")
    if text.endswith("i"):
        raise GoSyntaxError("complex numbers are not supported", tok.pos)
    try:
        body = text.lstrip("+-")
        sign = -1 if text.startswith("-") else 1
        if body[:2].lower() in ("0x", "0b", "0o"):
            if "." in body or "p" in body.lower():
                return sign * float.fromhex(body)
            return sign * int(body, 0)
        if any(c in body for c in ".eE"):
            return float(text)
        if len(body) > 1 and body.startswith("0"):
            return sign * int(body, 8)  # Go: a leading 0 means octal
        return int(text)
    except ValueError:
        raise GoSyntaxError(f"bad number syntax: {tok.value!r}", tok.pos) from None


_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34, "'": 39}


def _unquote(body: str, pos: int) -> str:
    """Go's strconv.Unquote for the body of a quoted string: \\x and octal escapes are bytes."""
    out = bytearray()
    i = 0
    try:
        while i < len(body):
            ch = body[i]
            if ch != "\\":
                out += ch.encode("utf-8", "surrogatepass")
                i += 1
                continue
            esc = body[i + 1]
            if esc in _SIMPLE_ESCAPES:
                out.append(_SIMPLE_ESCAPES[esc])
                i += 2
            elif esc == "x":
                out.append(int(body[i + 2 : i + 4], 16))
                i += 4
            elif esc in "01234567":
                out.append(int(body[i + 1 : i + 4], 8))
                i += 4
            elif esc in "uU":
                width = 4 if esc == "u" else 8
                out += chr(int(body[i + 2 : i + 2 + width], 16)).encode("utf-8")
                i += 2 + width
            else:
                raise ValueError(esc)
    except (ValueError, IndexError, OverflowError):
        raise GoSyntaxError(f"invalid syntax in quoted string: {body!r}", pos) from None
    return out.decode("utf-8", errors="replace")


def parse_go(text: str, functions: Collection[str]) -> list[Node]:
    """Parse a Go template; raises :class:`GoSyntaxError` with the offset of the problem."""
    return _Parser(text, functions).parse()
