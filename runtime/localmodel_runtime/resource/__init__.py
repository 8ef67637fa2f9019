"""The LocalModel resource as the Kubernetes API knows it: group, version, kind and plural.

The operator serves it and the router reads and creates it, so both take these names from here and
neither from the other. `names`, `events` and `manifest` beside this module are the rest of what both
sides need about the resource: object names, the Event builder and LocalModel manifests; `as_dict`
turns what a Kubernetes client returns into the plain dicts both sides work with.
"""

from __future__ import annotations

from typing import Any

GROUP = "localmodel.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "LocalModel"
PLURAL = "localmodels"
SINGULAR = "localmodel"
SHORT_NAMES = ["lm"]


def as_dict(obj: Any) -> dict[str, Any]:
    """A Kubernetes object as a plain dict, whether the client returned its model object or a mapping."""
    if isinstance(obj, dict):
        return obj
    result = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    assert isinstance(result, dict)
    return result
