"""`localmodel import`: LocalAI model YAML files → LocalModel manifests.

Each model of each file becomes one LocalModel whose `spec` is the model config, key for key. Template
files are inlined, because a LocalModel must carry everything its pods need: a template value that names
`<value>.tmpl` beside the file, and the `<parameters.model>.tmpl` default that LocalAI picks up for
chat, completion, edit and function templates when none is set.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localmodel_runtime.config import ModelConfigError, load_model_configs, unsupported_keys
from localmodel_runtime.resource.manifest import TemplateLookup, inline_templates, to_manifest
from localmodel_runtime.resource.names import kubernetes_name, unique_name


@dataclass
class ImportResult:
    manifests: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Lines for stderr: unsupported keys, inlined templates, renamed models."""
    errors: list[str] = field(default_factory=list)
    """One line per file that could not be converted."""


def model_files(paths: Iterable[Path]) -> Iterator[Path]:
    """The YAML files to import: files as given, and for a directory the `*.yaml`/`*.yml` files directly
    in it (not in subfolders, dotfiles skipped) — the files LocalAI itself would read."""
    for path in paths:
        if path.is_dir():
            yield from sorted(
                p
                for p in path.iterdir()
                if p.suffix in (".yaml", ".yml") and not p.name.startswith(".") and p.is_file()
            )
        else:
            yield path


def directory_templates(directory: Path) -> TemplateLookup:
    """LocalAI's rule for a models directory: a value names `<directory>/<value>.tmpl` if that exists."""

    def lookup(value: str) -> tuple[str, str] | None:
        if "\n" in value or "{{" in value or len(value) > 255:
            return None
        candidate = directory / f"{value}.tmpl"
        return (candidate.read_text(encoding="utf-8"), candidate.name) if candidate.is_file() else None

    return lookup


def import_files(paths: Iterable[Path], namespace: str | None = None) -> ImportResult:
    """Convert every model in every file; a broken file is reported and the others still convert."""
    result = ImportResult()
    taken: set[str] = set()
    for path in model_files(paths):
        try:
            configs = load_model_configs(path)
        except ModelConfigError as exc:
            result.errors.append(str(exc))
            continue
        for index, config in enumerate(configs):
            where = f"{path}[{index}]" if len(configs) > 1 else str(path)
            if not config.name:
                config = config.model_copy(update={"name": path.stem})
                result.notes.append(f"{where}: no name; using the file name {path.stem!r}")
            config, inlined = inline_templates(config, directory_templates(path.parent))
            result.notes.extend(f"{where}: {note}" for note in inlined)
            api_name = config.name or path.stem
            name = unique_name(kubernetes_name(api_name), taken)
            if name != api_name:
                result.notes.append(
                    f"{where}: model {api_name!r} is LocalModel {name!r} (spec.name keeps {api_name!r})"
                )
            result.notes.extend(
                f"{where}: model {api_name!r}: key {key!r} is kept but not served by localmodel"
                for key in unsupported_keys(config)
            )
            result.manifests.append(to_manifest(config, name, namespace, path.name))
    return result
