"""LocalAI model galleries: the index format, and entries turned into LocalModel manifests.

Shared by `localmodel gallery`, the operator's preload and the router's automatic setup.

An index is a YAML sequence of entries (`name`, `url` of a base config file or an inline
`config_file`, `overrides` deep-merged over the base, `files`, metadata). Installing follows LocalAI's
algorithm (localai-schema.md §14.4): base config + `{name}` ← overrides (maps merged, scalars and lists
replaced), files from the base and the entry become `download_files`, and the base's
`prompt_templates` are inlined where the config names them. The result is checked like any model file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from localmodel_runtime.config import ModelConfig, ModelConfigError, parse_model_configs
from localmodel_runtime.config.dump import dump_yaml
from localmodel_runtime.config.model_sources import GITHUB_PREFIX, FetchError, github_url
from localmodel_runtime.config.yaml12 import YAMLDecodeError, compose_documents, plain_value
from localmodel_runtime.errors import LocalModelException
from localmodel_runtime.merge import deep_merge
from localmodel_runtime.resource import GROUP
from localmodel_runtime.resource.manifest import inline_templates, to_manifest
from localmodel_runtime.resource.names import kubernetes_name

GALLERIES_ENV = "LOCALMODEL_GALLERIES"
GALLERY_ANNOTATION = f"{GROUP}/gallery"


class GalleryError(LocalModelException):
    """A gallery or entry that cannot be used; the message is one line for people."""


@dataclass(frozen=True)
class GallerySource:
    """A model gallery in LocalAI's index format, as the operator's and the router's configuration
    name it."""

    name: str
    url: str


@dataclass(frozen=True)
class GalleryEntry:
    gallery: str
    name: str
    data: dict[str, Any]
    base_url: str

    @property
    def ref(self) -> str:
        return f"{self.gallery}@{self.name}"

    @property
    def description(self) -> str:
        return " ".join(str(self.data.get("description") or "").split())

    @property
    def tags(self) -> list[str]:
        return [str(t) for t in self.data.get("tags") or []]


def resolve_url(url: str, base: str | None = None) -> str:
    """LocalAI's URL forms: `github:org/repo/path@branch`, https://, http://, file://, or a relative path."""
    if url.startswith(GITHUB_PREFIX):
        try:
            return github_url(url)
        except FetchError as exc:
            raise GalleryError(str(exc)) from None
    if "://" not in url and base:
        return base.rsplit("/", 1)[0] + "/" + url
    return url


def fetch_text(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        try:
            return Path(parsed.path).read_text(encoding="utf-8")
        except OSError as exc:
            raise GalleryError(f"{url}: {exc.strerror or exc}") from exc
    if parsed.scheme not in ("http", "https"):
        raise GalleryError(f"{url}: unsupported URL (use https://, http://, file:// or github:)")
    try:
        response = httpx.get(url, timeout=30.0, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise GalleryError(f"{url}: {exc.__class__.__name__}: {exc}") from exc
    if response.status_code != 200:
        raise GalleryError(f"{url}: HTTP {response.status_code} {response.reason_phrase}")
    return response.text


def load_yaml(text: str, source: str) -> Any:
    """YAML 1.2 values (anchors and merge keys resolved), as LocalAI reads galleries."""
    try:
        documents = compose_documents(text)
    except YAMLDecodeError as exc:
        raise GalleryError(f"{source}: {exc}") from exc
    return plain_value(documents[0]) if documents else None


def load_index(source: GallerySource) -> list[GalleryEntry]:
    url = resolve_url(source.url)
    data = load_yaml(fetch_text(url), url)
    if not isinstance(data, list):
        raise GalleryError(f"gallery {source.name}: {url} is not a list of entries")
    entries = []
    for item in data:
        if isinstance(item, dict) and item.get("name"):
            entries.append(GalleryEntry(source.name, str(item["name"]), item, url))
    return entries


def gallery_sources(configured: list[GallerySource]) -> list[GallerySource]:
    """Configured galleries, else LocalAI's GALLERIES-style JSON list in $LOCALMODEL_GALLERIES."""
    if configured:
        return configured
    raw = os.environ.get(GALLERIES_ENV, "")
    if not raw:
        return []
    try:
        items = json.loads(raw)
        return [GallerySource(str(i["name"]), str(i["url"])) for i in items]
    except (ValueError, KeyError, TypeError) as exc:
        raise GalleryError(f"${GALLERIES_ENV} must be a JSON list of {{name, url}}: {exc}") from exc


def find_entry(entries: list[GalleryEntry], ref: str) -> GalleryEntry:
    gallery, _, name = ref.rpartition("@")
    matches = [e for e in entries if e.name == name and (not gallery or e.gallery == gallery)]
    if not matches:
        raise GalleryError(f"no gallery entry named {ref!r}")
    if len(matches) > 1:
        raise GalleryError(f"{ref!r} is in several galleries: {', '.join(m.ref for m in matches)}; name one")
    return matches[0]


def _files(items: Any, where: str) -> list[dict[str, Any]]:
    if items in (None, []):
        return []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise GalleryError(f"{where}: files must be a list of {{filename, uri, sha256}}")
    return [{k: str(v) for k, v in i.items() if k in ("filename", "uri", "sha256") and v} for i in items]


def install_config(
    entry: GalleryEntry, name: str | None = None, overrides: dict[str, Any] | None = None
) -> tuple[ModelConfig, list[str]]:
    """The model config an entry installs as (LocalAI's InstallModelFromGallery, minus the downloads)."""
    base: dict[str, Any] = {}
    if entry.data.get("url"):
        url = resolve_url(str(entry.data["url"]), entry.base_url)
        loaded = load_yaml(fetch_text(url), url)
        base = loaded if isinstance(loaded, dict) else {}
    config_file = base.get("config_file", entry.data.get("config_file"))
    if isinstance(config_file, str):
        config_file = load_yaml(config_file, f"{entry.ref}: config_file")
    config = dict(config_file or {}) if isinstance(config_file, dict) else {}
    config["name"] = name or entry.name
    merged = deep_merge(config, deep_merge(entry.data.get("overrides") or {}, overrides or {}))
    if "deployment" in merged:
        # A gallery describes a model, never its pod: image, env and service account are the cluster's.
        raise GalleryError(
            f"{entry.ref}: a gallery entry may not set `deployment` (the runtime pod's image, env, service "
            "account, ...): it was refused; set placement on the LocalModel itself"
        )
    files = _files(base.get("files"), entry.ref) + _files(entry.data.get("files"), entry.ref)
    if files:
        known = {f.get("filename") for f in merged.get("download_files") or [] if isinstance(f, dict)}
        merged["download_files"] = list(merged.get("download_files") or []) + [
            f for f in files if f.get("filename") not in known
        ]
    try:
        (model,) = parse_model_configs(dump_yaml(merged), entry.ref)
    except ModelConfigError as exc:
        raise GalleryError(str(exc)) from exc
    templates = {str(t.get("name")): str(t.get("content", "")) for t in base.get("prompt_templates") or []}

    def lookup(value: str) -> tuple[str, str] | None:
        return (templates[value], f"{value} (prompt template)") if value in templates else None

    return inline_templates(model, lookup)


def install_manifest(
    entry: GalleryEntry,
    namespace: str | None,
    name: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    model, notes = install_config(entry, name, overrides)
    manifest = to_manifest(
        model, kubernetes_name(model.name or entry.name), namespace, f"gallery {entry.ref}"
    )
    manifest["metadata"]["annotations"] = {GALLERY_ANNOTATION: entry.ref}
    return manifest, notes
