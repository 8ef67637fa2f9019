"""What the console's tests share: a test gallery, a local table with a healthy and a `Degraded` model,
and a real router (in a thread) in local mode serving the console."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from localmodel_router.app import RouterApp
from localmodel_router.auth import ApiKeys
from localmodel_router.local_table import LocalDiscovery
from localmodel_router.settings import RouterSettings
from localmodel_router.table import ModelTable
from localmodel_runtime.gallery import GallerySource
from tests.support.router_fixtures import ThreadServer

DEGRADED_REASON = "RuntimeExited"
DEGRADED_MESSAGE = "the runtime exited with code 1: cannot load broken.gguf (not a GGUF file)"
GALLERY_ENTRIES = ("tiny-chat", "tiny-embed", "story-writer")


def write_gallery(directory: Path, name: str = "test") -> GallerySource:
    """A gallery in LocalAI's index format with three entries."""
    entries = [
        {
            "name": "tiny-chat",
            "description": "A tiny chat model for tests.",
            "license": "apache-2.0",
            "tags": ["llm", "gguf", "chat"],
            "config_file": {"backend": "llama", "context_size": 256, "parameters": {"model": "tiny.gguf"}},
            "files": [{"filename": "tiny.gguf", "uri": "huggingface://o/r/tiny.gguf"}],
        },
        {
            "name": "tiny-embed",
            "description": "Sentence embeddings.",
            "tags": ["embeddings"],
            "config_file": {"backend": "llama", "embeddings": True, "parameters": {"model": "e.gguf"}},
            "files": [{"filename": "e.gguf", "uri": "huggingface://o/r/e.gguf"}],
        },
        {
            "name": "story-writer",
            "description": "Writes <b>stories</b> & more.",
            "tags": ["llm", "gguf"],
            "config_file": {"backend": "llama", "parameters": {"model": "s.gguf"}},
            "files": [{"filename": "s.gguf", "uri": "huggingface://o/r/s.gguf"}],
        },
    ]
    path = directory / f"{name}-gallery.yaml"
    path.write_text(yaml.safe_dump(entries, sort_keys=False), encoding="utf-8")
    return GallerySource(name, f"file://{path}")


def degraded_entry(name: str = "broken") -> dict[str, Any]:
    """A local table entry for a model whose runtime failed: no endpoint, a `Degraded` condition."""
    return {
        "name": name,
        "endpoints": [],
        "backend": "llama",
        "device": "cpu",
        "conditions": [
            {"type": "Ready", "status": "False", "reason": DEGRADED_REASON},
            {"type": "Degraded", "status": "True", "reason": DEGRADED_REASON, "message": DEGRADED_MESSAGE},
        ],
    }


def write_table(path: Path, models: list[dict[str, Any]]) -> None:
    path.write_text(yaml.safe_dump({"models": models}, sort_keys=False), encoding="utf-8")


@contextlib.contextmanager
def console_router(
    table_path: Path, keys: set[str] | None = None, galleries: tuple[GallerySource, ...] = ()
) -> Iterator[ThreadServer]:
    """A real router in local mode (the table file re-read every 0.2 s), console included."""
    discovery = LocalDiscovery(table_path, poll_interval=0.2)
    app = RouterApp(ModelTable(), discovery, RouterSettings(), ApiKeys(keys or set()), galleries=galleries)
    server = ThreadServer(app).start()
    try:
        yield server
    finally:
        server.stop()
