"""Prompt prefixes as chained block hashes, computed the same way by the runtime and the router.

The router sees a request's JSON, never its tokens, so the unit both sides agree on is text: the
prompt (or the chat messages, each as role and text) in a canonical form, cut into fixed-size
character blocks. Block i's hash covers block i and, through its parent's hash, every block before
it (vLLM's and llm-d's block hashes are chained the same way), so one hash names a whole prefix and a
set of hashes answers "how long a prefix of this request is held here" by walking the request's
hashes in order until one is missing. Only whole blocks are hashed: a trailing partial block names
no reusable prefix.

A runtime publishes the hashes of the prompts its slots hold (`GET /v1/internal/load`); the router's
load-aware picker hashes each request with `request_blocks` and counts the leading hits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

BLOCK_CHARS = 256
"""Characters per block (~64 tokens of English): fine enough that a ~1,000-token system prompt spans
a dozen blocks, coarse enough that hashing costs a few microseconds per request."""
MAX_BLOCKS = 32
"""Blocks hashed per request at most (8 KiB of text): the bound keeps a 200 KB prompt as cheap to
route as a short one, and shared system prompts sit at the start anyway."""


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        # The router hashes bodies nobody has validated yet: anything odd is skipped, never raised.
        texts = (p.get("text") for p in content if isinstance(p, dict))
        return "".join(t for t in texts if isinstance(t, str))
    return ""


def prompt_text(body: Mapping[str, Any], limit: int = BLOCK_CHARS * MAX_BLOCKS) -> str:
    """The canonical text of a request's prompt, at most `limit` characters.

    Chat messages are joined as `role NUL text SOH` so the same words in another role (a system prompt
    vs a user turn) give other blocks; an Anthropic-style top-level `system` comes first. A completion
    takes `prompt` (the first one of a list), or `input`. Anything else has no text ("").
    """
    messages = body.get("messages")
    if isinstance(messages, list):
        parts: list[str] = []
        size = 0
        system = body.get("system")
        if system is not None:
            piece = f"system\x00{_text(system)}\x01"
            parts.append(piece)
            size += len(piece)
        for message in messages:
            if size >= limit:
                break
            if not isinstance(message, dict):
                continue
            piece = f"{message.get('role', '')}\x00{_text(message.get('content'))}\x01"
            parts.append(piece)
            size += len(piece)
        return "".join(parts)[:limit]
    prompt = body.get("prompt", body.get("input"))
    if isinstance(prompt, list) and prompt:
        prompt = prompt[0]
    return prompt[:limit] if isinstance(prompt, str) else ""


def block_hashes(text: str, block_chars: int = BLOCK_CHARS) -> list[str]:
    """The chained hashes (16 hex digits each) of the whole `block_chars` blocks of `text`."""
    hashes: list[str] = []
    parent = b""
    for start in range(0, len(text) - block_chars + 1, block_chars):
        block = text[start : start + block_chars].encode("utf-8", "surrogatepass")
        digest = hashlib.blake2b(parent + block, digest_size=8).digest()
        hashes.append(digest.hex())
        parent = digest
    return hashes


def request_blocks(body: Mapping[str, Any]) -> list[str]:
    """The block hashes of a request body (the parsed JSON of a chat or completion request)."""
    return block_hashes(prompt_text(body))
