"""A test cluster's objects through kubectl: what the control-plane tier's `Cluster` (fixtures.py) and
the real-node tier's `NodeCluster` (node_fixtures.py) share."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any, TypeVar

from tests.support.polling import poll_until

T = TypeVar("T")
JsonDict = dict[str, Any]


def condition(obj: JsonDict, kind: str) -> JsonDict:
    """The status condition of type `kind` of a Kubernetes object; `{}` where it has none."""
    for found in obj.get("status", {}).get("conditions") or []:
        if found.get("type") == kind:
            return dict(found)
    return {}


class ClusterObjects:
    kubectl: Callable[..., subprocess.CompletedProcess[str]]

    def get(
        self, kind: str, name: str | None = None, namespace: str | None = None, **selectors: str
    ) -> JsonDict:
        """`kubectl get -o json`; with no name, the List (label selectors as keyword args)."""
        args = ["get", kind, *([name] if name else []), "-o", "json"]
        if namespace:
            args += ["-n", namespace]
        if selectors:
            args += ["-l", ",".join(f"{k}={v}" for k, v in selectors.items())]
        data: JsonDict = json.loads(self.kubectl(*args).stdout)
        return data

    def ready_local_model(self, name: str, namespace: str) -> JsonDict | None:
        """The LocalModel once its Ready condition is True (a check for `wait`), else None."""
        lm = self.get("localmodel", name, namespace)
        return lm if condition(lm, "Ready").get("status") == "True" else None

    @staticmethod
    def wait(check: Callable[[], T | None], timeout: float = 60.0, what: str = "condition") -> T:
        """`poll_until` every half second (each check runs kubectl or a request)."""
        return poll_until(check, what, timeout, interval=0.5)
