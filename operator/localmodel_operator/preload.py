"""Preloading: gallery entries the operator installs as LocalModels at start-up (Helm `preload`)."""

from __future__ import annotations

import asyncio
import logging

from localmodel_runtime.gallery import (
    GalleryEntry,
    GalleryError,
    find_entry,
    gallery_sources,
    install_manifest,
    load_index,
)

from .kube import Kube, KubeError
from .settings import OperatorSettings

log = logging.getLogger(__name__)


async def preload(kube: Kube, settings: OperatorSettings) -> list[str]:
    """Create the configured LocalModels that do not exist yet; returns the names created.

    A broken entry is logged and skipped: one bad gallery line must not keep the operator down."""
    if not settings.preload:
        return []
    try:
        sources = gallery_sources(list(settings.galleries))
        entries: list[GalleryEntry] = []
        for source in sources:
            entries.extend(await asyncio.to_thread(load_index, source))
    except GalleryError as exc:
        log.error("preload: cannot read galleries: %s", exc)
        return []
    created = []
    for item in settings.preload:
        try:
            entry = find_entry(entries, item.entry)
            manifest, _ = await asyncio.to_thread(install_manifest, entry, item.namespace, item.name)
            if await kube.create_if_absent(manifest):
                created.append(f"{item.namespace}/{manifest['metadata']['name']}")
                log.info(
                    "preload: created LocalModel %s/%s from %s",
                    item.namespace,
                    manifest["metadata"]["name"],
                    entry.ref,
                )
        except (GalleryError, KubeError) as exc:
            log.error("preload: %s: %s", item.entry, exc)
    return created
