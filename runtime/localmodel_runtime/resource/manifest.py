"""LocalModel manifests from model configs: what `localmodel import`, gallery installs and the router's
automatic setup write.

A LocalModel must carry everything its pods need, so template references are inlined here: a template
value that names a template is replaced by its text, and the template named like `parameters.model` is
the default LocalAI picks up for chat, completion, edit and function templates when none is set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from localmodel_runtime.config import ModelConfig, TemplateConfig

from . import API_VERSION, GROUP, KIND

IMPORTED_FROM = f"{GROUP}/imported-from"
TEMPLATE_SLOTS = ("chat", "chat_message", "completion", "edit", "function")
DEFAULT_TEMPLATE_SLOTS = ("chat", "completion", "edit", "function")

TemplateLookup = Callable[[str], "tuple[str, str] | None"]
"""A template reference → (the template's text, where it came from), or None when it names nothing."""


def inline_templates(config: ModelConfig, lookup: TemplateLookup) -> tuple[ModelConfig, list[str]]:
    """Replace template references by their text; returns the new config and what was inlined."""
    notes: list[str] = []
    template = config.template.model_copy() if config.template else TemplateConfig()
    for slot in TEMPLATE_SLOTS:
        value = getattr(template, slot)
        if value and (found := lookup(value)):
            setattr(template, slot, found[0])
            notes.append(f"inlined template {found[1]} into template.{slot}")
    model_file = config.model_file
    if model_file and (default := lookup(model_file)):
        for slot in DEFAULT_TEMPLATE_SLOTS:
            if not getattr(template, slot):
                setattr(template, slot, default[0])
                notes.append(f"inlined default template {default[1]} into template.{slot}")
    if not notes:
        return config, notes
    return config.model_copy(update={"template": template}), notes


def config_to_spec(config: ModelConfig) -> dict[str, Any]:
    """The LocalAI part of a LocalModel spec: set keys only, LocalAI's spelling, unknown keys kept."""
    return config.model_dump(mode="json", exclude_none=True, by_alias=True)


def to_manifest(config: ModelConfig, name: str, namespace: str | None, source: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    metadata["annotations"] = {IMPORTED_FROM: source}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": config_to_spec(config),
    }
