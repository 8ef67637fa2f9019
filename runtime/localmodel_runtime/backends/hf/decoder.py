"""Streamed token ids to text, one delta at a time."""

from __future__ import annotations

from collections.abc import Callable, Sequence


class IncrementalDecoder:
    """Turns a growing list of token ids into text deltas without splitting UTF-8 characters.

    Decodes a small window (the previous delta's tokens plus the new ones) and emits what the new
    tokens add, holding back while the text ends in U+FFFD (a character still incomplete), so that
    tokenizers that drop or add leading spaces per call (SentencePiece) still join up right.
    """

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._prefix = 0
        self._read = 0

    def push(self, ids: Sequence[int]) -> str:
        self._ids.extend(ids)
        before = self._decode(self._ids[self._prefix : self._read])
        now = self._decode(self._ids[self._prefix :])
        if len(now) <= len(before) or now.endswith("\ufffd"):
            return ""
        self._prefix, self._read = self._read, len(self._ids)
        return now[len(before) :]

    @property
    def tokens(self) -> int:
        return len(self._ids)
