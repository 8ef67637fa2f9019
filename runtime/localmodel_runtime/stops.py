"""Stop sequences on streamed text, applied exactly: the one matcher the server and every backend use.

A stop sequence may arrive split over several pieces (`"abc</s"`, then `">"`), so the end of the text
that could still be the start of one is held back until the next piece shows whether it is; a match
ends the output just before it. When the stream ends without a match, `flush` gives what was held.
"""

from __future__ import annotations

from collections.abc import Sequence


def merge_stops(model: Sequence[str] | None, requested: str | Sequence[str] | None) -> list[str]:
    """The model's `stopwords` then the request's `stop`, in order, without duplicates or empty strings."""
    asked = [requested] if isinstance(requested, str) else list(requested or [])
    return list(dict.fromkeys(s for s in [*(model or []), *asked] if s))


def partial_stop(text: str, stops: Sequence[str], longest: int) -> int:
    """Length of the longest end of `text` that is the beginning of a stop sequence."""
    for size in range(min(len(text), longest - 1), 0, -1):
        tail = text[-size:]
        if any(s.startswith(tail) for s in stops):
            return size
    return 0


class StopMatcher:
    """Feeds streamed text through the stop sequences `words`; `stopped` once one has matched."""

    def __init__(self, words: Sequence[str]) -> None:
        self.words = [w for w in words if w]
        self._longest = max((len(w) for w in self.words), default=0)
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """The text that is safe to emit now: all of it, less a held-back possible stop start, or the
        text before a stop sequence that has just completed (nothing more after that)."""
        if self.stopped:
            return ""
        if not self.words:
            return text
        held = self._held + text
        cut = min((i for i in (held.find(w) for w in self.words) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._held = ""
            return held[:cut]
        keep = partial_stop(held, self.words, self._longest)
        self._held = held[len(held) - keep :] if keep else ""
        return held[: len(held) - keep]

    def flush(self) -> str:
        """What was held back, once the stream has ended without a stop sequence."""
        held, self._held = self._held, ""
        return "" if self.stopped else held
