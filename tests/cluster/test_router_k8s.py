"""The real router process discovering LocalModels and EndpointSlices on a real API server.

No operator here: each test makes the objects the operator would (a Deployment of small HTTP pods and
the Service named after the LocalModel), so the router's side is tested alone. The router runs as a
ServiceAccount bound to the chart's router rules, not as admin. Where a test needs the operator's
reaction to the scale subresource (replicas → Deployment), a stand-in thread mirrors it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fixtures import Cluster
from tests.support.router_cluster import (  # noqa: F401
    RouterProcess,
    router_kubeconfig,
    router_role_fixture,
    start_router_fixture,
)

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]
JsonDict = dict[str, Any]


def localmodel(name: str, api_name: str, deployment: JsonDict | None = None) -> str:
    spec: JsonDict = {"name": api_name, "backend": "llama", "parameters": {"model": "x.gguf"}}
    if deployment:
        spec["deployment"] = deployment
    return json.dumps(
        {
            "apiVersion": "localmodel.dev/v1alpha1",
            "kind": "LocalModel",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def upstream(name: str, replicas: int, flags: Path) -> str:
    """What the operator would make for LocalModel `name`: a Deployment (pods answer POSTs with their
    name; ready while `flags/ready` exists) and the Service `name` selecting them."""
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 2
      volumes: [{{name: flags, hostPath: {{path: "{flags}", type: DirectoryOrCreate}}}}]
      containers:
      - name: web
        image: localmodel.test/httpserver:1
        args: ["8080"]
        ports: [{{containerPort: 8080, name: http}}]
        volumeMounts: [{{name: flags, mountPath: /flags}}]
        readinessProbe:
          httpGet: {{path: "/file?path=/flags/ready", port: http}}
          periodSeconds: 1
          failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 8080, targetPort: http}}]
"""


def pod_names(cluster: Cluster, namespace: str, app: str) -> set[str]:
    return {p["metadata"]["name"] for p in cluster.get("pods", namespace=namespace, app=app)["items"]}


def replicas(cluster: Cluster, namespace: str, name: str) -> int | None:
    value = cluster.get("localmodel", name, namespace)["spec"].get("deployment", {}).get("replicas")
    return value if isinstance(value, int) else None


def test_models_endpoints_readiness_and_deletion(
    router_role: Cluster, namespace: str, start_router: Callable[..., RouterProcess], tmp_path: Path
) -> None:
    cluster = router_role
    flags = tmp_path / "flags"
    flags.mkdir()
    (flags / "ready").write_text("yes")
    router: RouterProcess = start_router("--cold-start-timeout", "2", all_namespaces=True)
    cluster.apply(localmodel("web", "web-model"), namespace)
    cluster.apply(upstream("web", 2, flags), namespace)

    def listed_ready() -> JsonDict | None:
        model = router.models().get("web-model")
        return model if model and model["ready"] and model["ready_endpoints"] == 2 else None

    model = cluster.wait(listed_ready, timeout=90, what="web-model ready with 2 endpoints in /v1/models")
    assert model["object"] == "model"

    # Requests go to the pods' own addresses (the Service's ClusterIP does not route here at all).
    pods = pod_names(cluster, namespace, "web")
    answered = set()
    for _ in range(6):
        response = router.post("web-model")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["path"] == "/v1/chat/completions" and body["model"] == "web-model"
        answered.add(body["pod"])
    assert answered <= pods and answered

    # Readiness flips off: both endpoints stay known but not ready; a request waits, then 503.
    (flags / "ready").unlink()
    cluster.wait(
        lambda: (m := router.models().get("web-model")) is not None and m["ready_endpoints"] == 0,
        timeout=60,
        what="endpoints not ready",
    )
    response = router.post("web-model")
    assert response.status_code == 503 and "retry-after" in response.headers
    assert response.json()["error"]["code"] == "model_not_ready"

    # ... and back on.
    (flags / "ready").write_text("yes")
    cluster.wait(listed_ready, timeout=60, what="endpoints ready again")
    assert router.post("web-model").status_code == 200

    # The LocalModel goes: the model is unknown, whatever pods still run.
    cluster.kubectl("delete", "localmodel", "web", "-n", namespace)
    cluster.wait(
        lambda: "web-model" not in router.models(), timeout=60, what="web-model gone from /v1/models"
    )
    response = router.post("web-model")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


def test_namespace_mode_needs_only_a_namespaced_binding(
    router_role: Cluster, namespace: str, start_router: Callable[..., RouterProcess]
) -> None:
    cluster = router_role
    other = f"{namespace}-other"
    cluster.kubectl("create", "namespace", other)
    try:
        cluster.apply(localmodel("here", "here-model"), namespace)
        cluster.apply(localmodel("there", "there-model"), other)
        router: RouterProcess = start_router()  # RoleBinding in `namespace` only

        def listed_here() -> dict[str, JsonDict] | None:
            models = router.models()
            return models if "here-model" in models else None

        listed = cluster.wait(listed_here, timeout=30, what="here-model listed")
        assert "there-model" not in listed
        assert listed["here-model"]["ready"] is False
    finally:
        cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)


def ready_addresses(cluster: Cluster, namespace: str, service: str) -> int:
    slices = cluster.get("endpointslices", namespace=namespace)["items"]
    return sum(
        1
        for s in slices
        if s["metadata"].get("labels", {}).get("kubernetes.io/service-name") == service
        for e in s.get("endpoints") or []
        if (e.get("conditions") or {}).get("ready") is not False
    )


def answering_pods(router: RouterProcess, model: str, times: int = 8) -> set[str]:
    pods = set()
    for _ in range(times):
        response = router.post(model)
        assert response.status_code == 200, response.text
        pods.add(response.json()["pod"])
    return pods


def test_a_name_taken_in_another_namespace_never_takes_the_older_models_traffic(
    router_role: Cluster, namespace: str, start_router: Callable[..., RouterProcess], tmp_path: Path
) -> None:
    cluster = router_role
    other = f"{namespace}-b"  # sorts after `namespace`: it loses a tie on creation time too
    cluster.kubectl("create", "namespace", other)
    flags = tmp_path / "flags"
    flags.mkdir()
    (flags / "ready").write_text("yes")
    try:
        router: RouterProcess = start_router("--cold-start-timeout", "2", all_namespaces=True)
        cluster.apply(localmodel("team-a", "shared"), namespace)
        cluster.apply(upstream("team-a", 1, flags), namespace)
        cluster.wait(
            lambda: (m := router.models().get("shared")) is not None and m["ready_endpoints"] == 1,
            timeout=90,
            what="shared served by team-a",
        )
        a_pods = pod_names(cluster, namespace, "team-a")
        # Team B asks for the same API name later, with ready pods of its own.
        cluster.apply(localmodel("team-b", "shared"), other)
        cluster.apply(upstream("team-b", 1, flags), other)
        cluster.wait(lambda: ready_addresses(cluster, other, "team-b") == 1, timeout=90, what="B's pod ready")
        b_pods = pod_names(cluster, other, "team-b")
        # A marker model made after B's pod was ready: once the router lists it ready, its single watch
        # of each kind has delivered B's LocalModel and B's ready slice too (events come in order).
        cluster.apply(localmodel("marker", "marker"), other)
        cluster.apply(upstream("marker", 1, flags), other)
        cluster.wait(
            lambda: (m := router.models().get("marker")) is not None and m["ready_endpoints"] == 1,
            timeout=90,
            what="the marker model served",
        )
        # The router has seen B's ready pod, and still sends everything to A.
        assert answering_pods(router, "shared") <= a_pods
        assert router.models()["shared"]["ready_endpoints"] == 1

        # Deleting B leaves A served.
        cluster.kubectl("delete", "localmodel", "team-b", "-n", other)
        assert answering_pods(router, "shared") <= a_pods
        # B again, then A goes: the name is handed over to B, whose pods alone answer.
        cluster.apply(localmodel("team-b", "shared"), other)
        assert answering_pods(router, "shared") <= a_pods
        cluster.kubectl("delete", "localmodel", "team-a", "-n", namespace)

        def served_by_b() -> bool:
            response = router.post("shared")
            return response.status_code == 200 and response.json()["pod"] in b_pods

        cluster.wait(served_by_b, timeout=60, what="shared handed over to team-b")
        assert answering_pods(router, "shared") <= b_pods
    finally:
        cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)


def test_a_namespace_without_the_routers_rights_is_a_clear_error_not_a_hang(
    router_role: Cluster, namespace: str, tmp_path: Path
) -> None:
    cluster = router_role
    unbound = f"{namespace}-unbound"
    cluster.kubectl("create", "namespace", unbound)
    kubeconfig = router_kubeconfig(cluster, namespace, tmp_path, cluster_wide=False)  # bound in `namespace`
    router = RouterProcess(["--namespace", namespace, "--namespace", unbound], tmp_path / "r.log", kubeconfig)
    try:

        def refused() -> str | None:
            assert router.proc.poll() is None, router.output()
            log = router.output()
            return (
                log
                if f"the router may not list and watch LocalModels in namespace {unbound}" in log
                else None
            )

        log = cluster.wait(refused, timeout=60, what="the router to say which right it lacks")
        assert "watchNamespaces" in log and "forbidden" in log.lower()
        ready = httpx.get(router.url + "/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "not_ready"
    finally:
        router.stop()
        cluster.kubectl("delete", "namespace", unbound, "--wait=false", check=False)


class OperatorStandIn(threading.Thread):
    """What the operator does with the scale subresource: LocalModel replicas → Deployment replicas."""

    def __init__(self, cluster: Cluster, namespace: str, name: str, start: int = 0) -> None:
        super().__init__(daemon=True)
        self.cluster, self.namespace, self.name = cluster, namespace, name
        self.start_replicas = start
        self.stopped = threading.Event()
        self.seen: list[int] = []

    def run(self) -> None:
        current: int | None = self.start_replicas  # what the Deployment starts at
        while not self.stopped.wait(0.3):
            wanted = replicas(self.cluster, self.namespace, self.name)
            if wanted is not None and wanted != current:
                self.seen.append(wanted)
                self.cluster.kubectl(
                    "scale", "deployment", self.name, "-n", self.namespace, f"--replicas={wanted}"
                )
                current = wanted


@contextlib.contextmanager
def scale_to_zero_model(
    cluster: Cluster, namespace: str, tmp_path: Path, name: str, replicas: int, delay: int
) -> Iterator[OperatorStandIn]:
    """LocalModel `name` (API name `name-model`, `minReplicas: 0`, the given idle delay) with its ready
    upstream at `replicas`, and the operator's stand-in mirroring scale changes until the block ends."""
    flags = tmp_path / f"{name}-flags"
    flags.mkdir()
    (flags / "ready").write_text("yes")
    autoscaling = {"minReplicas": 0, "maxReplicas": 2, "scaleDownDelaySeconds": delay}
    cluster.apply(
        localmodel(name, f"{name}-model", {"replicas": replicas, "autoscaling": autoscaling}), namespace
    )
    cluster.apply(upstream(name, replicas, flags), namespace)
    stand_in = OperatorStandIn(cluster, namespace, name, replicas)
    stand_in.start()
    try:
        yield stand_in
    finally:
        stand_in.stopped.set()
        stand_in.join(5)


def test_scale_from_zero_once_then_idle_scale_down(
    router_role: Cluster, namespace: str, start_router: Callable[..., RouterProcess], tmp_path: Path
) -> None:
    cluster = router_role
    with scale_to_zero_model(cluster, namespace, tmp_path, "sleepy", replicas=0, delay=4) as stand_in:
        router: RouterProcess = start_router("--cold-start-timeout", "120")
        cluster.wait(lambda: "sleepy-model" in router.models(), timeout=30, what="sleepy-model listed")
        assert router.models()["sleepy-model"]["ready"] is False

        # Three requests arrive together for a model at zero: one scale-up, all three answered.
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda _: router.post("sleepy-model"), range(3)))
        assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
        assert router.metric('localmodel_router_scale_ups_total{model="sleepy-model"}') == 1
        assert replicas(cluster, namespace, "sleepy") in (0, 1)  # 0 only if already idle again

        # Nobody asks for it for scaleDownDelaySeconds: the router puts it back to zero.
        cluster.wait(
            lambda: replicas(cluster, namespace, "sleepy") == 0, timeout=60, what="LocalModel scaled to 0"
        )
        cluster.wait(
            lambda: (m := router.models().get("sleepy-model")) is not None and m["endpoints"] == 0,
            timeout=60,
            what="no endpoints after scale-down",
        )
        assert stand_in.seen[:2] == [1, 0], stand_in.seen


def test_router_replicas_share_the_idle_clock(
    router_role: Cluster, namespace: str, start_router: Callable[..., RouterProcess], tmp_path: Path
) -> None:
    """Two router replicas; traffic reaches only one. The other, idle by its own clock, must not scale
    the model down while the first serves it (the Lease carries the last use), and does once nobody has."""
    cluster = router_role
    with scale_to_zero_model(cluster, namespace, tmp_path, "shared", replicas=1, delay=6):
        serving: RouterProcess = start_router()
        idle: RouterProcess = start_router()
        for router in (serving, idle):
            cluster.wait(
                lambda r=router: bool((r.models().get("shared-model") or {}).get("ready")),
                timeout=60,
                what="shared-model ready in both routers",
            )
        # Three delays' worth of traffic through one replica only.
        end = time.monotonic() + 18
        while time.monotonic() < end:
            response = serving.post("shared-model")
            assert response.status_code == 200, response.text
            assert replicas(cluster, namespace, "shared") == 1, idle.output()
            time.sleep(1)
        lease = cluster.get("lease", "localmodel-last-use.shared", namespace)
        (owner,) = lease["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"]) == ("LocalModel", "shared")
        assert "through another router replica" in idle.output()

        # Nobody uses it any more: it goes to zero.
        cluster.wait(
            lambda: replicas(cluster, namespace, "shared") == 0, timeout=60, what="LocalModel scaled to 0"
        )


@pytest.mark.parametrize("routers", [1, 2])
def test_replicas_follow_the_load(
    router_role: Cluster,
    namespace: str,
    start_router: Callable[..., RouterProcess],
    tmp_path: Path,
    routers: int,
) -> None:
    """maxReplicas 3, one request in flight per replica wanted: three slow requests at once bring the
    model to three replicas; once they are answered it goes back to one after the delay. With two
    router replicas the requests are split 2 + 1, and only their shared load asks for three."""
    cluster = router_role
    flags = tmp_path / "flags"
    flags.mkdir()
    (flags / "ready").write_text("yes")
    autoscaling = {"minReplicas": 1, "maxReplicas": 3, "targetInFlight": 1, "scaleDownDelaySeconds": 3}
    cluster.apply(localmodel("busy", "busy-model", {"replicas": 1, "autoscaling": autoscaling}), namespace)
    cluster.apply(upstream("busy", 1, flags), namespace)
    stand_in = OperatorStandIn(cluster, namespace, "busy", start=1)
    stand_in.start()
    try:
        started = [
            start_router("--autoscale-interval", "1", "--autoscale-window", "4") for _ in range(routers)
        ]
        for router in started:
            cluster.wait(
                lambda r=router: bool((r.models().get("busy-model") or {}).get("ready")),
                timeout=60,
                what="ready",
            )
        targets = [started[0], started[0], started[-1]]  # 3 through one router, or 2 + 1
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            slow = [pool.submit(r.post, "busy-model", 120.0, sleep=15) for r in targets]
            cluster.wait(lambda: replicas(cluster, namespace, "busy") == 3, timeout=30, what="3 replicas")
            assert [f.result().status_code for f in slow] == [200, 200, 200]
        cluster.wait(lambda: replicas(cluster, namespace, "busy") == 1, timeout=60, what="back to 1 replica")
        cluster.wait(lambda: stand_in.seen[-1:] == [1], timeout=10, what="the Deployment back to 1")
        assert max(stand_in.seen) == 3, stand_in.seen
        # The load went through the Lease the replicas share: one report per router replica.
        lease = cluster.get("lease", "localmodel-last-use.busy", namespace)
        reports = [k for k in lease["metadata"]["annotations"] if k.startswith("load.localmodel.dev/")]
        assert len(reports) == routers
    finally:
        stand_in.stopped.set()
        stand_in.join(5)


def test_scale_from_zero_that_never_becomes_ready_is_503_with_retry_after(
    router_role: Cluster, namespace: str, start_router: Callable[..., RouterProcess]
) -> None:
    cluster = router_role
    autoscaling = {"minReplicas": 0, "scaleDownDelaySeconds": 600}
    cluster.apply(localmodel("stuck", "stuck-model", {"replicas": 0, "autoscaling": autoscaling}), namespace)
    router: RouterProcess = start_router("--cold-start-timeout", "2")
    cluster.wait(lambda: "stuck-model" in router.models(), timeout=30, what="stuck-model listed")
    response = router.post("stuck-model")
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"].isdigit()
    assert response.json()["error"]["code"] == "model_not_ready"
    # The wake-up went through the scale subresource, with the router's own (non-admin) rights.
    cluster.wait(lambda: replicas(cluster, namespace, "stuck") == 1, timeout=30, what="replicas patched to 1")
