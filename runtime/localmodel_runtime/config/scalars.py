"""Scalar types that accept what LocalAI's YAML decoder (gopkg.in/yaml.v3) accepts.

yaml.v3 is lenient in one direction only: any scalar decoded into a Go ``string`` keeps its text
(``main_gpu: 0`` is ``"0"``). Manifests that reach us as JSON from the Kubernetes API have already lost
the text, so :data:`LenientStr` rebuilds it the way Go would print it.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator


def go_scalar_text(value: Any) -> Any:
    """Return the text yaml.v3 would store in a string field for a scalar that arrived typed."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else str(int(value))
    return value


LenientStr = Annotated[str, BeforeValidator(go_scalar_text)]
"""A string field that also takes a number or boolean, kept as its text."""
