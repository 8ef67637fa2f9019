"""One merge of nested YAML mappings, LocalAI's (mergo's WithOverride): maps merge key by key, scalars
and lists are replaced. Gallery overrides and the operator's configuration over its defaults use it."""

from __future__ import annotations

from typing import Any


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
