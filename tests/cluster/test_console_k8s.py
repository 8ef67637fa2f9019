"""The console's models endpoint in cluster mode: the real router process, as a ServiceAccount bound to
the chart's router rules, reading LocalModels (conditions, backend, desired replicas) and their Events
from a real API server. The chart's rules let the router list Events, so they appear; where a cluster's
rules do not, the answer says so in words and still lists the models."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.support.fixtures import Cluster
from tests.support.router_cluster import (  # noqa: F401
    ROUTER_ROLE,
    RouterProcess,
    install_crd_and_role,
    router_role_fixture,
    start_router_fixture,
)

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]
JsonDict = dict[str, Any]
MESSAGE = "spec.parameters.model: no such file bad.gguf in the models volume"


def console_models(router: RouterProcess) -> JsonDict:
    response = httpx.get(router.url + "/console/api/models", timeout=10)
    assert response.status_code == 200, response.text
    data: JsonDict = response.json()
    return data


def listing_where(router: RouterProcess, check: Callable[[JsonDict], bool]) -> JsonDict | None:
    """The console's listing once one of its models passes `check`, else None."""
    data = console_models(router)
    return data if any(check(m) for m in data["models"]) else None


def test_models_show_conditions_and_events_as_far_as_the_router_may_read_them(
    router_role: Cluster, namespace: str, start_router: Callable[..., RouterProcess]
) -> None:
    cluster = router_role
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    manifest = {
        "apiVersion": "localmodel.dev/v1alpha1",
        "kind": "LocalModel",
        "metadata": {"name": "lm-alpha"},
        "spec": {
            "name": "alpha",
            "backend": "llama",
            "parameters": {"model": "bad.gguf"},
            "deployment": {"replicas": 2, "device": "cpu"},
        },
    }
    cluster.apply(json.dumps(manifest), namespace)
    status = {
        "status": {
            "backend": "llama",
            "device": "cpu",
            "replicas": 0,
            "readyReplicas": 0,
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "NoReadyReplicas", "lastTransitionTime": now},
                {
                    "type": "Degraded",
                    "status": "True",
                    "reason": "ModelFileMissing",
                    "message": MESSAGE,
                    "lastTransitionTime": now,
                },
            ],
        }
    }
    cluster.kubectl(
        "patch", "localmodel", "lm-alpha", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps(status),
    )  # fmt: skip
    uid = cluster.get("localmodel", "lm-alpha", namespace)["metadata"]["uid"]
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "lm-alpha.console-test", "namespace": namespace},
        "involvedObject": {
            "apiVersion": "localmodel.dev/v1alpha1",
            "kind": "LocalModel",
            "name": "lm-alpha",
            "namespace": namespace,
            "uid": uid,
        },
        "type": "Warning",
        "reason": "ModelFileMissing",
        "message": MESSAGE,
        "count": 3,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "source": {"component": "localmodel-operator"},
    }
    cluster.apply(json.dumps(event), namespace)

    router = start_router()
    data = cluster.wait(lambda: listing_where(router, lambda m: m["name"] == "alpha"), what="alpha listed")
    assert data["mode"] == "cluster"
    (alpha,) = data["models"]
    assert (alpha["namespace"], alpha["resource"], alpha["backend"], alpha["device"]) == (
        namespace,
        "lm-alpha",
        "llama",
        "cpu",
    )
    assert alpha["state"] == "degraded" and alpha["ready"] is False
    assert alpha["replicas"] == {"ready": 0, "desired": 2, "endpoints": 0}
    degraded = next(c for c in alpha["conditions"] if c["type"] == "Degraded")
    assert (degraded["reason"], degraded["message"]) == ("ModelFileMissing", MESSAGE)
    data = cluster.wait(lambda: listing_where(router, lambda m: bool(m["events"])), what="the Event shown")
    assert data["problems"] == []
    (seen,) = data["models"][0]["events"]
    assert seen == {
        "type": "Warning",
        "reason": "ModelFileMissing",
        "message": MESSAGE,
        "count": 3,
        "time": now,
    }

    # A cluster whose rules leave out Events: said once, in words; the models are still shown.
    role = cluster.get("clusterrole", ROUTER_ROLE)
    without = [r for r in role["rules"] if "events" not in r.get("resources", [])]
    cluster.kubectl("patch", "clusterrole", ROUTER_ROLE, "--type=merge", "-p", json.dumps({"rules": without}))
    try:
        data = cluster.wait(
            lambda: console_models(router) if console_models(router)["problems"] else None,
            what="the refused Events said",
        )
        (problem,) = data["problems"]
        assert (
            problem.startswith(f"cannot list Events in namespace {namespace!r}: ") and "forbidden" in problem
        )
        assert [m["name"] for m in data["models"]] == ["alpha"] and data["models"][0]["events"] == []
    finally:
        install_crd_and_role(cluster)
