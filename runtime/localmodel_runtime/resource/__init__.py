"""The LocalModel resource as the Kubernetes API knows it: group, version, kind and plural.

The operator serves it and the router reads and creates it, so both take these names from here and
neither from the other. `names`, `events` and `manifest` beside this module are the rest of what both
sides need about the resource: object names, the Event builder and LocalModel manifests.
"""

from __future__ import annotations

GROUP = "localmodel.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "LocalModel"
PLURAL = "localmodels"
SINGULAR = "localmodel"
SHORT_NAMES = ["lm"]
