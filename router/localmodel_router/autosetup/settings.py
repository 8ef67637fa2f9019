"""Automatic setup's configuration: a YAML file (the Helm chart mounts one) and the flags over it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from localmodel_router.errors import ConfigurationError
from localmodel_runtime.gallery import GallerySource
from localmodel_runtime.settings_file import FileModel, GalleryItem, NonEmpty, read_mapping, validate_file

CONFIG_ENV = "LOCALMODEL_AUTO_SETUP_CONFIG"


class AutoSetupConfigError(ConfigurationError, ValueError):
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


class _AutoSetupFile(FileModel):
    """The YAML form (camelCase, as Helm values)."""

    enabled: bool = False
    namespace: str | None = None
    allowRepositories: list[NonEmpty] = []
    allowGalleries: list[NonEmpty] = []
    maxModels: Annotated[int, Field(strict=True, ge=0)] = 10
    waitSeconds: Annotated[float, Field(strict=True, gt=0)] = 60.0
    galleryRefreshSeconds: Annotated[float, Field(strict=True, gt=0)] = 300.0
    galleries: list[GalleryItem] = []


def settings_from_dict(data: dict[str, Any]) -> AutoSetupSettings:
    """Settings from the YAML form: enabled, namespace, allowRepositories, allowGalleries, maxModels,
    waitSeconds, galleryRefreshSeconds, galleries [{name, url}]."""
    try:
        file = validate_file(_AutoSetupFile, data)
    except ValueError as exc:
        raise AutoSetupConfigError(str(exc)) from None
    return AutoSetupSettings(
        enabled=file.enabled,
        namespace=file.namespace or None,
        repositories=tuple(file.allowRepositories),
        galleries=tuple(file.allowGalleries),
        max_models=file.maxModels,
        wait=file.waitSeconds,
        sources=tuple(item.source() for item in file.galleries),
        gallery_refresh=file.galleryRefreshSeconds,
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
