"""Resolution: a requested model name → the LocalModel to create (a Hugging Face file or a gallery entry)."""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import logging
import posixpath
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from localmodel_router.errors import RouterError
from localmodel_runtime.config.backends import guess_backend
from localmodel_runtime.gallery import GalleryError, GallerySource, install_manifest, load_index
from localmodel_runtime.resource import API_VERSION, GROUP, KIND
from localmodel_runtime.resource.names import MAX_NAME, kubernetes_name

log = logging.getLogger("localmodel.router")

AUTO_CREATED = f"{GROUP}/auto-created"
"""Label and annotation ("true") on every LocalModel the router created."""
SOURCE = f"{GROUP}/auto-source"
"""Annotation: what the model was created from (`huggingface://…` or `gallery@entry`)."""
SERVED_BACKENDS = frozenset({"llama"})
"""Backends a file can be set up with unattended: one file is all they need (GGUF)."""
_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_HF_PATH = re.compile(rf"^(?:(?:huggingface|hf)://)?({_SEGMENT})/({_SEGMENT})/({_SEGMENT}(?:/{_SEGMENT})*)$")


@dataclass(frozen=True)
class HfFile:
    owner: str
    repo: str
    path: str

    @property
    def repository(self) -> str:
        return f"{self.owner}/{self.repo}"

    @property
    def uri(self) -> str:
        return f"huggingface://{self.owner}/{self.repo}/{self.path}"

    @property
    def filename(self) -> str:
        return posixpath.basename(self.path)


def parse_hf_path(name: str) -> HfFile | None:
    """`owner/repo/dir/file.ext`, optionally as `huggingface://…` or `hf://…`; None for anything else
    (no `..`, no revision, no query: a file path in a repository and nothing more)."""
    match = _HF_PATH.match(name)
    if match is None:
        return None
    owner, repo, path = match.groups()
    if any(part in (".", "..") or part.endswith(".") for part in path.split("/")):
        return None
    if "." not in posixpath.basename(path):
        return None
    return HfFile(owner, repo, path)


@dataclass(frozen=True)
class Plan:
    """What a resolved request creates."""

    requested: str
    source: str
    """Canonical origin (`huggingface://o/r/f.gguf`, `gallery@entry`): one LocalModel per source."""
    manifest: dict[str, Any]

    @property
    def object_name(self) -> str:
        name: str = self.manifest["metadata"]["name"]
        return name


def object_name(base: str, source: str) -> str:
    """A valid DNS-1035 name, readable and unique per source: `<base>-<hash of source>`."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:8]
    stem = kubernetes_name(base)[: MAX_NAME - len(digest) - 1].rstrip("-")
    return f"{stem}-{digest}"


def _mark(manifest: dict[str, Any], plan_source: str, namespace: str) -> None:
    meta = manifest.setdefault("metadata", {})
    meta["namespace"] = namespace
    meta["labels"] = {**(meta.get("labels") or {}), AUTO_CREATED: "true"}
    meta["annotations"] = {**(meta.get("annotations") or {}), AUTO_CREATED: "true", SOURCE: plan_source}
    spec = manifest.setdefault("spec", {})
    deployment = spec.setdefault("deployment", {})
    autoscaling = deployment.setdefault("autoscaling", {})
    autoscaling.setdefault("minReplicas", 0)


def hf_plan(requested: str, hf: HfFile, namespace: str) -> Plan:
    backend = guess_backend(hf.filename)
    if backend not in SERVED_BACKENDS:
        kind = f"the {backend} backend" if backend else "no backend localmodel knows"
        raise RouterError(
            404,
            f"The model `{requested}` does not exist, and automatic setup does not serve {hf.filename!r} "
            f"(it needs {kind}; automatic setup takes GGUF files)",
            "model_not_found",
            "model",
        )
    source = hf.uri
    manifest: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": object_name(hf.filename.rsplit(".", 1)[0], source)},
        "spec": {
            "name": requested,
            "backend": backend,
            "parameters": {"model": hf.filename},
            "download_files": [{"filename": hf.filename, "uri": source}],
        },
    }
    _mark(manifest, source, namespace)
    return Plan(requested, source, manifest)


def repository_allowed(repository: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(repository, p) for p in patterns)


class GalleryCatalog:
    """The configured galleries' entries, loaded lazily (in a thread: the loader is synchronous) and
    reused for `refresh` seconds."""

    def __init__(self, sources: Sequence[GallerySource], refresh: float) -> None:
        self.sources = list(sources)
        self.refresh = refresh
        self._entries: list[Any] = []
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()

    async def entries(self) -> list[Any]:
        async with self._lock:
            now = time.monotonic()
            if self._loaded_at is not None and now - self._loaded_at < self.refresh:
                return self._entries
            entries: list[Any] = []
            for source in self.sources:
                try:
                    entries.extend(await asyncio.to_thread(load_index, source))
                except GalleryError as exc:
                    log.warning("automatic setup: gallery %s unusable: %s", source.name, exc)
            self._entries, self._loaded_at = entries, now
            return entries

    async def find(self, requested: str) -> list[Any]:
        """Entries that `name` or `gallery@name` names (several when galleries share a name)."""
        gallery, _, name = requested.rpartition("@")
        if not name:
            return []
        return [e for e in await self.entries() if e.name == name and (not gallery or e.gallery == gallery)]


async def gallery_plan(requested: str, entry: Any, namespace: str) -> Plan:
    try:
        manifest, _ = await asyncio.to_thread(install_manifest, entry, namespace, requested)
    except GalleryError as exc:
        raise RouterError(
            502, f"automatic setup of gallery entry {entry.ref}: {exc}", "auto_setup_failed", "model"
        ) from exc
    source = str(entry.ref)
    manifest["metadata"]["name"] = object_name(entry.name, source)
    _mark(manifest, source, namespace)
    return Plan(requested, source, manifest)
