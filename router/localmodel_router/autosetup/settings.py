"""Automatic setup's configuration: a YAML file (the Helm chart mounts one) and the flags over it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localmodel_runtime.gallery import GallerySource
from localmodel_runtime.settings_file import gallery_sources_from, read_mapping

CONFIG_ENV = "LOCALMODEL_AUTO_SETUP_CONFIG"


class AutoSetupConfigError(ValueError):
    """The automatic-setup configuration is unusable; the message names the key."""


@dataclass(frozen=True)
class AutoSetupSettings:
    enabled: bool = False
    namespace: str | None = None
    """Where created LocalModels go; must be a namespace the router watches."""
    repositories: tuple[str, ...] = ()
    """Glob patterns over `owner/repo` (fnmatch, case-sensitive): `TheBloke/*`, `Qwen/Qwen2.5-*-GGUF`."""
    galleries: tuple[str, ...] = ()
    """Names of the galleries whose entries may be set up."""
    max_models: int = 10
    """Most auto-created LocalModels at once in the namespace; one more is refused."""
    wait: float = 60.0
    """Seconds a request that triggered (or joined) a setup waits for a ready endpoint before 503 with
    `Retry-After` (downloads take longer: the client retries, and later requests wait as cold starts)."""
    sources: tuple[GallerySource, ...] = ()
    """The gallery indexes to resolve entry names in (the operator's `galleries` list)."""
    gallery_refresh: float = 300.0
    """Seconds a loaded gallery index is reused before it is fetched again."""


def settings_from_dict(data: dict[str, Any]) -> AutoSetupSettings:
    """The YAML form (camelCase, as Helm values): enabled, namespace, allowRepositories,
    allowGalleries, maxModels, waitSeconds, galleries [{name, url}]."""
    known = {"enabled", "namespace", "allowRepositories", "allowGalleries", "maxModels", "waitSeconds"}
    unknown = set(data) - known - {"galleries", "galleryRefreshSeconds"}
    if unknown:
        raise AutoSetupConfigError(f"unknown key(s): {', '.join(sorted(unknown))}")

    def strings(key: str) -> tuple[str, ...]:
        value = data.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise AutoSetupConfigError(f"{key} must be a list of non-empty strings")
        return tuple(value)

    def number(key: str, default: float) -> float:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise AutoSetupConfigError(f"{key} must be a positive number")
        return float(value)

    try:
        sources = gallery_sources_from(data.get("galleries") or [])
    except ValueError as exc:
        raise AutoSetupConfigError(str(exc)) from None
    max_models = data.get("maxModels", 10)
    if isinstance(max_models, bool) or not isinstance(max_models, int) or max_models < 0:
        raise AutoSetupConfigError("maxModels must be a non-negative integer")
    namespace = data.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise AutoSetupConfigError("namespace must be a string")
    return AutoSetupSettings(
        enabled=bool(data.get("enabled", False)),
        namespace=namespace or None,
        repositories=strings("allowRepositories"),
        galleries=strings("allowGalleries"),
        max_models=max_models,
        wait=number("waitSeconds", 60.0),
        sources=tuple(sources),
        gallery_refresh=number("galleryRefreshSeconds", 300.0),
    )


def load_settings_file(path: Path) -> AutoSetupSettings:
    try:
        data = read_mapping(path)
    except ValueError as exc:
        raise AutoSetupConfigError(str(exc)) from exc
    try:
        return settings_from_dict(data)
    except AutoSetupConfigError as exc:
        raise AutoSetupConfigError(f"{path}: {exc}") from exc
