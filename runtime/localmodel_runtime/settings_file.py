"""The YAML configuration files of the operator and the router: reading one, and the `galleries` list
both carry. Problems are ValueErrors whose message names the file or the item; each caller re-raises
them as its own configuration error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from localmodel_runtime.gallery import GallerySource


def read_mapping(path: Path) -> dict[str, Any]:
    """The file's top-level mapping (an empty file is an empty one)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping")
    return data


def gallery_sources_from(items: list[Any]) -> list[GallerySource]:
    """A `galleries:` list of {name, url}."""
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not item.get("name") or not item.get("url"):
            raise ValueError(f"galleries[{i}]: expected {{name, url}}")
        out.append(GallerySource(str(item["name"]), str(item["url"])))
    return out
