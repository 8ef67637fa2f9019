"""Prompt prefixes as block hashes, computed the same way by the runtime and the router.

The router sees a request's JSON, never its tokens, so the unit both sides agree on is text: the
prompt (or the chat messages, each as role and text) in a canonical form, UTF-8 encoded and cut into
fixed-size blocks. Block i's hash is the hash of everything up to the end of block i, so one hash
names a whole prefix (as vLLM's and llm-d's chained block hashes do), and a set of hashes answers
"how long a prefix of this request is held here" by walking the request's hashes in order until one
is missing. Only whole blocks are hashed: a trailing partial block names no reusable prefix. One
running hash state copied at each block boundary gives every prefix's hash in a single pass.

A runtime publishes the hashes of the prompts its slots hold (`GET /v1/internal/load`); the router's
load-aware picker hashes each request with `request_blocks` and counts the leading hits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

BLOCK_BYTES = 256
"""Bytes per block (~64 tokens of English): fine enough that a ~1,000-token system prompt spans a
dozen blocks, coarse enough that hashing a request costs microseconds."""
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


def prompt_text(body: Mapping[str, Any], limit: int = BLOCK_BYTES * MAX_BLOCKS) -> str:
    """The canonical text of a request's prompt, at most `limit` characters (enough for `limit` bytes).

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


def block_hashes(text: str, block_bytes: int = BLOCK_BYTES, max_blocks: int = MAX_BLOCKS) -> list[str]:
    """The hashes (16 hex digits each) of the prefixes of `text` that end on a whole block."""
    data = text.encode("utf-8", "surrogatepass")
    end = min(len(data) // block_bytes, max_blocks) * block_bytes
    view = memoryview(data)
    state = hashlib.blake2b(digest_size=8)
    hashes: list[str] = []
    for start in range(0, end, block_bytes):
        state.update(view[start : start + block_bytes])
        hashes.append(state.copy().hexdigest())
    return hashes


def request_blocks(body: Mapping[str, Any]) -> list[str]:
    """The block hashes of a request body (the parsed JSON of a chat or completion request)."""
    return block_hashes(prompt_text(body))
