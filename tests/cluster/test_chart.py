"""The Helm chart on the real control plane: its output validates server-side, and `helm install`,
`upgrade` and `uninstall` work, with the operator and router running as processes under the chart's
own ServiceAccounts and ClusterRoles (the process node maps the operator image to the venv)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from tests.support.chart import ALL_FEATURES, CHART, run_helm, set_json
from tests.support.fixtures import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(420)]
JsonDict = dict[str, Any]
T = TypeVar("T")

# A stand-in for the Prometheus Operator's CRD, so that the ServiceMonitors validate too.
SERVICE_MONITOR_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: servicemonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, plural: servicemonitors, singular: servicemonitor}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""

TINY_MODEL = """
apiVersion: localmodel.dev/v1alpha1
kind: LocalModel
metadata: {name: tiny}
spec:
  name: tiny
  backend: llama
  parameters: {model: tiny.gguf, temperature: 0}
  context_size: 256
  download_files: [{filename: tiny.gguf, uri: "file://%s"}]
  deployment: {device: cpu, replicas: 1, resources: {requests: {cpu: 100m, memory: 256Mi}}}
"""


class Helm:
    """helm against the test control plane, with its own config and cache directories."""

    def __init__(self, cluster: Cluster, home: Path) -> None:
        self.env = {
            "KUBECONFIG": str(cluster.kubeconfig),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def __call__(self, *args: str) -> str:
        return run_helm(*args, env=self.env).stdout


@pytest.fixture
def helm(control_plane: Cluster, tmp_path: Path) -> Helm:
    return Helm(control_plane, tmp_path)


@pytest.fixture
def service_monitor_crd(control_plane: Cluster) -> Iterator[None]:
    control_plane.kubectl("apply", "-f", "-", input=SERVICE_MONITOR_CRD)
    control_plane.kubectl(
        "wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com", "--timeout=60s"
    )
    yield
    control_plane.kubectl("delete", "crd", "servicemonitors.monitoring.coreos.com", "--wait=false")


def _ready(pod: JsonDict) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _pods(cluster: Cluster, ns: str, component: str) -> list[JsonDict]:
    pods: list[JsonDict] = cluster.get(
        "pods", namespace=ns, **{"app.kubernetes.io/instance": "lm", "app.kubernetes.io/component": component}
    )["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def _ready_pods(cluster: Cluster, ns: str, component: str, count: int) -> list[JsonDict] | None:
    pods = _pods(cluster, ns, component)
    return pods if len(pods) == count and all(_ready(p) for p in pods) else None


def _ready_pods_of(cluster: Cluster, ns: str, model: str) -> list[JsonDict] | None:
    pods: list[JsonDict] = cluster.get("pods", namespace=ns, **{"app.kubernetes.io/instance": model})["items"]
    return pods if pods and all(_ready(p) for p in pods) else None


def _completion(router_url: str, request: JsonDict) -> JsonDict | None:
    response = httpx.post(f"{router_url}/v1/completions", json=request, timeout=60)
    if response.status_code == 503:  # the router has not seen the ready endpoint yet
        return None
    assert response.status_code == 200, response.text
    body: JsonDict = response.json()
    return body


def _explained(cluster: Cluster, ns: str, check: Callable[[], T | None], timeout: float, what: str) -> T:
    """`Cluster.wait`, failing with the operator's log and the LocalModels' status attached."""
    try:
        return cluster.wait(check, timeout, what)
    except pytest.fail.Exception as exc:
        logs = "\n".join(
            cluster.logs(p["metadata"]["name"], ns)[-4000:] for p in _pods(cluster, ns, "operator")
        )
        models = cluster.kubectl("get", "localmodels", "-n", ns, "-o", "yaml", check=False).stdout
        pytest.fail(f"{exc}\n--- operator log ---\n{logs}\n--- LocalModels ---\n{models}")


def test_rendered_chart_validates_on_the_api_server(
    control_plane: Cluster, namespace: str, helm: Helm, service_monitor_crd: None
) -> None:
    values = {**ALL_FEATURES, "watchNamespaces": [namespace]}
    for setting in ({}, values):
        manifest = helm("template", "lm", str(CHART), "-n", namespace, "--include-crds", *set_json(setting))
        dry_run = ["apply", "--server-side", "--force-conflicts", "--dry-run=server", "-n", namespace]
        out = control_plane.kubectl(*dry_run, "-f", "-", input=manifest).stdout
        kinds = {d["kind"] for d in yaml.safe_load_all(manifest) if d}
        assert out.count("serverside-applied (server dry run)") == len(
            [d for d in yaml.safe_load_all(manifest) if d]
        ), out
        assert "CustomResourceDefinition" in kinds


def test_install_serve_upgrade_uninstall(
    control_plane: Cluster, namespace: str, helm: Helm, tiny_gguf: Path
) -> None:
    cp = control_plane
    # The model file, where a pod on the process node sees it (pods get their own /tmp).
    source = cp.node.dir / "files" / namespace / "tiny.gguf"
    source.parent.mkdir(parents=True)
    shutil.copyfile(tiny_gguf, source)
    # The documented CRD step (Helm never upgrades crds/): idempotent, also when the CRD exists.
    crds = helm("show", "crds", str(CHART))
    cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=crds)
    cp.kubectl("wait", "--for=condition=Established", "crd/localmodels.localmodel.dev", "--timeout=60s")

    # Scoped to this test's namespace so that nothing else in the shared cluster is touched.
    scope = ["--set-json", f'watchNamespaces=["{namespace}"]', "--set", "operator.logFormat=plain"]
    notes = helm("install", "lm", str(CHART), "-n", namespace, *scope, "--wait", "--timeout=3m")
    url = f"http://lm-localmodel-router.{namespace}.svc.cluster.local:8080"
    assert f"{url}/v1" in notes and f"curl -s {url}/v1/completions" in notes
    operator = cp.wait(lambda: _ready_pods(cp, namespace, "operator", 1), 120, "operator Ready")[0]
    routers = cp.wait(lambda: _ready_pods(cp, namespace, "router", 1), 120, "router Ready")
    assert operator["spec"]["serviceAccountName"] == "lm-localmodel-operator"
    assert routers[0]["spec"]["serviceAccountName"] == "lm-localmodel-router"
    router_url = f"http://{routers[0]['status']['podIP']}:8080"
    assert httpx.get(f"{router_url}/readyz", timeout=10).status_code == 200

    # Least privilege: with watchNamespaces the components hold Roles there, nothing else but the
    # operator's CRD reads; the router's Leases stay in the watched namespace.
    def can(component: str, verb: str, resource: str, ns: str) -> bool:
        account = f"system:serviceaccount:{namespace}:lm-localmodel-{component}"
        res = cp.kubectl("auth", "can-i", verb, resource, "-n", ns, f"--as={account}", check=False)
        return res.stdout.strip() == "yes"

    assert can("router", "create", "leases.coordination.k8s.io", namespace)
    assert can("router", "list", "localmodels.localmodel.dev", namespace)
    assert can("operator", "create", "deployments.apps", namespace)
    for elsewhere in ("kube-system", "kube-node-lease", "default"):
        for verb in ("create", "update", "patch"):
            assert not can("router", verb, "leases.coordination.k8s.io", elsewhere), (verb, elsewhere)
        assert not can("router", "list", "localmodels.localmodel.dev", elsewhere)
        assert not can("operator", "create", "deployments.apps", elsewhere)
        assert not can("operator", "get", "secrets", elsewhere)
    assert can("operator", "watch", "customresourcedefinitions.apiextensions.k8s.io", "default")
    cluster_roles = cp.kubectl("get", "clusterroles", "-o", "name").stdout.split()
    assert f"clusterrole.rbac.authorization.k8s.io/{namespace}-lm-localmodel-router" not in cluster_roles

    # The operator, under the chart's ClusterRole, turns a LocalModel into a Deployment.
    cp.apply(TINY_MODEL % source, namespace)
    deployment = _explained(
        cp,
        namespace,
        lambda: cp.get("deployments", namespace=namespace, **{"app.kubernetes.io/instance": "tiny"})["items"],
        120,
        "the operator to create the model's Deployment",
    )[0]
    assert deployment["metadata"]["ownerReferences"][0]["kind"] == "LocalModel"
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "ghcr.io/localmodel/runtime:0.1.0-llama-cpp-cpu"
    # The router discovers the model's ready pod through its own ClusterRole and proxies to it.
    _explained(cp, namespace, lambda: _ready_pods_of(cp, namespace, "tiny"), 180, "the model's pod Ready")
    request = {"model": "tiny", "prompt": "Hello", "max_tokens": 4}
    answer = cp.wait(lambda: _completion(router_url, request), 60, "a completion through the router")
    assert answer["model"] == "tiny" and isinstance(answer["choices"][0]["text"], str)
    # The runtime answers only the router (runtimeAuth, on by default): called directly without the
    # token it refuses in OpenAI's shape; its probes stay open; its token lives in the model's Secret.
    pod = _ready_pods_of(cp, namespace, "tiny")
    assert pod is not None
    runtime_url = f"http://{pod[0]['status']['podIP']}:8080"
    direct = httpx.post(f"{runtime_url}/v1/completions", json=request, timeout=30)
    assert direct.status_code == 401 and direct.json()["error"]["code"] == "invalid_api_key", direct.text
    assert httpx.get(f"{runtime_url}/healthz", timeout=10).status_code == 200
    token_secret = cp.get("secret", "tiny-runtime-token", namespace)
    assert token_secret["metadata"]["ownerReferences"][0]["kind"] == "LocalModel"

    # An upgrade changes the router (2 replicas, debug logs) and the operator's configuration, which
    # replaces the operator pod (Recreate).
    helm(
        "upgrade", "lm", str(CHART), "-n", namespace, "--reuse-values",
        "--set", "router.replicas=2", "--set", "router.logLevel=debug",
        "--set", "operator.config.startupTimeoutSeconds=600", "--wait", "--timeout=3m",
    )  # fmt: skip
    routers = cp.wait(lambda: _ready_pods(cp, namespace, "router", 2), 120, "two routers Ready")
    assert all("--log-level=debug" in p["spec"]["containers"][0]["args"] for p in routers)
    new_operator = cp.wait(lambda: _ready_pods(cp, namespace, "operator", 1), 120, "the new operator")[0]
    assert new_operator["metadata"]["uid"] != operator["metadata"]["uid"]
    config = cp.get("configmap", "lm-localmodel-operator", namespace)["data"]["operator.yaml"]
    assert yaml.safe_load(config)["startupTimeoutSeconds"] == 600

    # Deleting the model while the operator runs lets it finish (finalizer) and garbage collection
    # take the Deployment; then the release goes, the CRD stays.
    cp.kubectl("delete", "localmodel", "tiny", "-n", namespace, "--timeout=90s")
    helm("uninstall", "lm", "-n", namespace, "--wait", "--timeout=2m")
    cp.wait(
        lambda: not _pods(cp, namespace, "operator") and not _pods(cp, namespace, "router"),
        120,
        "operator and router pods to go",
    )
    assert cp.get("deployments", namespace=namespace, **{"app.kubernetes.io/instance": "lm"})["items"] == []
    roles = cp.kubectl("get", "clusterroles", "-o", "name").stdout
    assert f"{namespace}-lm-localmodel-operator" not in roles
    assert cp.kubectl("get", "crd", "localmodels.localmodel.dev", check=False).returncode == 0
