"""Lexer for Go `text/template`: splits a template into text and actions, and an action into tokens.

It follows Go's `text/template/parse/lex.go`: `{{- ` / ` -}}` trim markers (a dash next to the
delimiter *and* a space), comments `{{/* … */}}` that must touch the delimiters, and action tokens
separated by spaces. Trimming is done here, with Go's whitespace set (space, tab, CR, LF), so the
generated Jinja never relies on Jinja's own `-` trimming (which strips all Unicode whitespace).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from localmodel_runtime.errors import LocalModelException

SPACE_CHARS = " \t\r\n"
KEYWORDS = frozenset(
    {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue", "nil"}
)


class GoSyntaxError(LocalModelException):
    """A Go template that does not parse; `pos` is the offset in the template text."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


@dataclass(frozen=True)
class Token:
    kind: str  # field dot var ident string number char bool nil keyword pipe ( ) := = ,
    value: str
    pos: int
    spaced: bool  # preceded by whitespace: Go separates arguments with spaces and chains fields without


@dataclass
class Text:
    text: str
    pos: int


@dataclass
class Action:
    tokens: list[Token]
    pos: int
    end: int = 0


_NUMBER = re.compile(
    r"[+-]?(?:0[xX][0-9a-fA-F_]*(?:\.[0-9a-fA-F_]*)?(?:[pP][+-]?\d+)?|0[bB][01_]+|0[oO][0-7_]+"
    r"|(?:\d[\d_]*)?(?:\.\d[\d_]*)?(?:[eE][+-]?\d[\d_]*)?)i?"
)
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_CHAR = re.compile(r"'(?:[^'\\\n]|\\.)+'")


def _is_alnum(ch: str) -> bool:
    return ch == "_" or ch.isalnum()


def split_template(text: str) -> list[Text | Action]:
    """Split into text and actions, applying trim markers and dropping comments."""
    items: list[Text | Action] = []
    pos = 0
    trim_next = False
    while True:
        start = text.find("{{", pos)
        chunk = text[pos:] if start < 0 else text[pos:start]
        if trim_next:
            chunk_start = pos + len(chunk) - len(chunk.lstrip(SPACE_CHARS))
            chunk = chunk.lstrip(SPACE_CHARS)
        else:
            chunk_start = pos
        if start < 0:
            if chunk:
                items.append(Text(chunk, chunk_start))
            return items
        inner = start + 2
        if len(text) > inner + 1 and text[inner] == "-" and text[inner + 1] in SPACE_CHARS:
            chunk = chunk.rstrip(SPACE_CHARS)
            inner += 2
        if chunk:
            items.append(Text(chunk, chunk_start))
        if text.startswith("/*", inner):
            pos, trim_next = _lex_comment(text, start, inner)
            continue
        action, pos, trim_next = _lex_action(text, inner, start)
        items.append(action)


def _lex_comment(text: str, start: int, pos: int) -> tuple[int, bool]:
    end = text.find("*/", pos + 2)
    if end < 0:
        raise GoSyntaxError("unclosed comment", start)
    end += 2
    if text.startswith("}}", end):
        return end + 2, False
    if text.startswith(" -}}", end) or (
        len(text) > end + 3 and text[end] in SPACE_CHARS and text.startswith("-}}", end + 1)
    ):
        return end + 4, True
    raise GoSyntaxError("comment ends before closing delimiter", start)


def _at_right_delim(text: str, pos: int) -> tuple[bool, bool]:
    if (
        len(text) > pos + 1
        and text[pos] in SPACE_CHARS
        and text[pos + 1] == "-"
        and text.startswith("}}", pos + 2)
    ):
        return True, True
    return text.startswith("}}", pos), False


def _lex_action(text: str, pos: int, start: int) -> tuple[Action, int, bool]:
    tokens: list[Token] = []
    spaced = False
    depth = 0
    n = len(text)
    while True:
        at_end, trim = _at_right_delim(text, pos)
        if at_end and depth == 0:
            return Action(tokens, start, pos), pos + (4 if trim else 2), trim
        if pos >= n:
            raise GoSyntaxError("unclosed action", start)
        ch = text[pos]
        if ch in SPACE_CHARS:
            pos += 1
            spaced = True
            continue
        tok_pos = pos
        if text.startswith(":=", pos):
            kind, value, pos = ":=", ":=", pos + 2
        elif ch in "|=,":
            kind, value, pos = ch, ch, pos + 1
        elif ch == "(":
            kind, value, pos, depth = "(", ch, pos + 1, depth + 1
        elif ch == ")":
            if depth == 0:
                raise GoSyntaxError("unexpected right paren", pos)
            kind, value, pos, depth = ")", ch, pos + 1, depth - 1
        elif ch == '"':
            m = _STRING.match(text, pos)
            if not m:
                raise GoSyntaxError("unterminated quoted string", pos)
            kind, value, pos = "string", m.group(), m.end()
        elif ch == "`":
            end = text.find("`", pos + 1)
            if end < 0:
                raise GoSyntaxError("unterminated raw quoted string", pos)
            kind, value, pos = "rawstring", text[pos + 1 : end], end + 1
        elif ch == "'":
            m = _CHAR.match(text, pos)
            if not m:
                raise GoSyntaxError("unterminated character constant", pos)
            kind, value, pos = "char", m.group(), m.end()
        elif ch == "$":
            end = pos + 1
            while end < n and _is_alnum(text[end]):
                end += 1
            kind, value, pos = "var", text[pos:end], end
        elif ch == "." and not (pos + 1 < n and text[pos + 1].isdigit()):
            end = pos + 1
            while end < n and _is_alnum(text[end]):
                end += 1
            kind, value, pos = ("dot", ".", end) if end == pos + 1 else ("field", text[pos + 1 : end], end)
        elif ch in "+-." or ch.isdigit():
            m = _NUMBER.match(text, pos)
            if not m or not m.group() or (m.end() < n and _is_alnum(text[m.end()])):
                raise GoSyntaxError(f"bad number syntax: {text[pos : pos + 10]!r}", pos)
            kind, value, pos = "number", m.group(), m.end()
        elif _is_alnum(ch):
            end = pos
            while end < n and _is_alnum(text[end]):
                end += 1
            value = text[pos:end]
            pos = end
            if value in ("true", "false"):
                kind = "bool"
            elif value == "nil":
                kind = "nil"
            elif value in KEYWORDS:
                kind = "keyword"
            else:
                kind = "ident"
        else:
            raise GoSyntaxError(f"unrecognized character in action: {ch!r}", pos)
        tokens.append(Token(kind, value, tok_pos, spaced))
        spaced = False
