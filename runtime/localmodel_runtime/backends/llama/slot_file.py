"""`prompt_cache_path`: one slot's KV on disk, so that a restarted pod does not read a long shared
prompt again. llama.cpp's sequence state file holds the KV and the tokens it stands for; the batch
engine reads it into slot 0 at start-up and writes its most recently used slot at shutdown, both while
its worker is not running.
"""

from __future__ import annotations

import ctypes
import logging
import time
from pathlib import Path
from typing import Any

from .slots import DECODED_IMAGE, Slot

log = logging.getLogger(__name__)


def restore_slot(lib: Any, ctx: Any, slot: Slot, n_ctx_seq: int, path: Path) -> None:
    tokens = (lib.llama_token * n_ctx_seq)()
    count = ctypes.c_size_t(0)
    read = lib.llama_state_seq_load_file(
        ctx, str(path).encode(), slot.seq_id, tokens, n_ctx_seq, ctypes.byref(count)
    )
    if not read:
        log.warning("prompt cache %s does not fit this model and context; ignoring it", path)
        lib.llama_memory_seq_rm(lib.llama_get_memory(ctx), slot.seq_id, -1, -1)
        return
    slot.cached = list(tokens[: count.value])
    slot.last_used = time.monotonic()
    log.info("prompt cache %s: restored %d tokens", path, count.value)


def save_slot(lib: Any, ctx: Any, slots: list[Slot], path: Path) -> None:
    # An image's KV cannot be restored without the image: only text-only sequences are saved.
    used = [s for s in slots if s.cached and DECODED_IMAGE not in s.cached]
    if not used:
        return
    slot = max(used, key=lambda s: s.last_used)
    tokens = (lib.llama_token * len(slot.cached))(*slot.cached)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        written = lib.llama_state_seq_save_file(ctx, str(tmp).encode(), slot.seq_id, tokens, len(slot.cached))
        if not written:
            raise OSError("llama.cpp wrote nothing")
        tmp.replace(path)  # never leave a half-written cache behind
        log.info("prompt cache %s: saved %d tokens", path, len(slot.cached))
    except OSError as exc:
        log.warning("could not write the prompt cache %s: %s", path, exc)
