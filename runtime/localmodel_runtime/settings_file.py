"""The YAML configuration files of the operator and the router: reading one, validating it against a
pydantic model of its keys, and the `galleries` list both carry. Problems are ValueErrors whose message
names the file or the key path (`preload[0].entry: Field required`); each caller re-raises them as its
own configuration error."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from localmodel_runtime.gallery import GallerySource

NonEmpty = Annotated[str, Field(min_length=1)]
FileModelT = TypeVar("FileModelT", bound="FileModel")


class FileModel(BaseModel):
    """A block of a configuration file: camelCase keys as Helm values spell them; a key set to null
    (an empty Helm value) means its default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


class GalleryItem(FileModel):
    name: NonEmpty
    url: NonEmpty

    def source(self) -> GallerySource:
        return GallerySource(self.name, self.url)


def read_mapping(path: Path) -> dict[str, Any]:
    """The file's top-level mapping (an empty file is an empty one)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping")
    return data


def validate_file(model: type[FileModelT], data: Mapping[str, Any], prefix: str = "") -> FileModelT:
    """`data` as `model`; a ValueError naming each bad key by its path (under `prefix`)."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        problems = [f"{key_path(prefix, error['loc'])}: {_message(error)}" for error in exc.errors()]
        raise ValueError("; ".join(problems)) from None


def _message(error: Any) -> str:
    """pydantic's message, without the "Value error, " it puts before our own validators' messages."""
    if error["type"] == "value_error" and "error" in error.get("ctx", {}):
        return str(error["ctx"]["error"])
    return str(error["msg"])


def key_path(prefix: str, loc: tuple[int | str, ...]) -> str:
    """`a.b[0].c` for pydantic's location ("a", "b", 0, "c")."""
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"
