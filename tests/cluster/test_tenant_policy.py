"""The trust boundary on the real API server: the chart's ValidatingAdmissionPolicy refuses what the default
`tenantPolicy` forbids at `kubectl apply`, with a message naming the field and the setting; the operator, on
a cluster without the policy, reports the same LocalModel as Degraded/PolicyViolation and creates nothing.

The policy is bound to the test's namespace only (the control plane is shared by the session) and removed
afterwards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.support.chart import CHART, run_helm, set_json
from tests.support.fixtures import Cluster
from tests.support.operator_process import OperatorProcess, operator_on
from tests.support.router_cluster import install_crd_and_role

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]
JsonDict = dict[str, Any]

FIELD = "spec.deployment.{} is not allowed"
BAD = [
    ({"image": "evil.example/miner:1"}, FIELD.format("image"), "allowedImagePrefixes"),
    (
        {"env": [{"name": "LD_PRELOAD", "value": "/models/x.so"}, {"name": "OK", "value": "1"}]},
        "spec.deployment.env may not set LD_PRELOAD",
        "forbiddenEnv",
    ),
    ({"envFrom": [{"secretRef": {"name": "db"}}]}, FIELD.format("envFrom"), "allowEnvFrom"),
    (
        {"env": [{"name": "DB", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]},
        FIELD.format("env[].valueFrom"),
        "allowEnvFrom",
    ),
    ({"serviceAccountName": "deployer"}, FIELD.format("serviceAccountName"), "allowServiceAccountName"),
    ({"podAnnotations": {"a": "b"}}, FIELD.format("podAnnotations"), "allowPodAnnotations"),
    (
        {"storage": {"existingClaim": "team-data"}},
        FIELD.format("storage.existingClaim"),
        "allowExistingClaim",
    ),
]


def local_model(name: str, deployment: JsonDict) -> str:
    spec = {
        "backend": "llama",
        "parameters": {"model": "tiny.gguf"},
        "deployment": {"replicas": 0, **deployment},
    }
    meta = {"name": name}
    return json.dumps(
        {"apiVersion": "localmodel.dev/v1alpha1", "kind": "LocalModel", "metadata": meta, "spec": spec}
    )


@pytest.fixture
def admission_policy(control_plane: Cluster, namespace: str) -> Iterator[str]:
    """The chart's policy and binding as `helm template` renders them by default, bound to `namespace`."""
    install_crd_and_role(control_plane)
    manifest = run_helm(
        "template", "lm", str(CHART), "-n", namespace, "--show-only", "templates/admission-policy.yaml",
        *set_json({"watchNamespaces": [namespace]}),
    ).stdout  # fmt: skip
    docs = [d for d in yaml.safe_load_all(manifest) if d]
    assert [d["kind"] for d in docs] == ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    control_plane.kubectl("apply", "-f", "-", input=manifest)
    name = docs[0]["metadata"]["name"]
    try:
        yield name
    finally:
        control_plane.kubectl(
            "delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", name, check=False
        )


def refusal(cluster: Cluster, namespace: str, manifest: str) -> str | None:
    """The API server's refusal of `manifest` (a server-side dry run: nothing is stored), None if accepted."""
    res = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=manifest, check=False
    )
    return res.stderr if res.returncode != 0 else None


def test_the_admission_policy_refuses_what_the_default_tenant_policy_forbids(
    control_plane: Cluster, namespace: str, admission_policy: str
) -> None:
    cluster = control_plane
    # The policy takes effect once the API server has compiled it: wait for the first refusal.
    first = local_model("bad", BAD[0][0])
    cluster.wait(lambda: refusal(cluster, namespace, first), timeout=60, what="the policy in force")
    for deployment, says, setting in BAD:
        res = cluster.kubectl(
            "apply", "-n", namespace, "-f", "-", input=local_model("bad", deployment), check=False
        )
        assert res.returncode != 0, deployment
        assert f"ValidatingAdmissionPolicy '{admission_policy}'" in res.stderr, res.stderr
        assert says in res.stderr and f"tenantPolicy.{setting}" in res.stderr, res.stderr
    assert cluster.kubectl("get", "localmodel", "bad", "-n", namespace, check=False).returncode != 0
    # What the examples ask for passes; so does an update that keeps within the policy.
    good = {"device": "cpu", "env": [{"name": "OMP_NUM_THREADS", "value": "2"}], "storage": {"size": "1Gi"}}
    cluster.apply(local_model("good", good), namespace)
    res = cluster.kubectl(
        "patch", "localmodel", "good", "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"deployment": {"serviceAccountName": "deployer"}}}), check=False,
    )  # fmt: skip
    assert res.returncode != 0 and "serviceAccountName is not allowed" in res.stderr, res.stderr


@pytest.fixture(scope="module")
def operator_proc(
    control_plane: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    yield from operator_on(control_plane, tmp_path_factory.mktemp("operator"), {})


def test_without_the_policy_the_operator_reports_a_policy_violation_and_creates_nothing(
    control_plane: Cluster, namespace: str, operator_proc: OperatorProcess
) -> None:
    cluster = control_plane
    for index, (deployment, _, _) in enumerate(BAD):
        cluster.apply(local_model(f"bad-{index}", deployment), namespace)

    def degraded(index: int) -> JsonDict | None:
        lm = cluster.get("localmodel", f"bad-{index}", namespace)
        conditions = {c["type"]: c for c in lm.get("status", {}).get("conditions") or []}
        cond = conditions.get("Degraded") or {}
        return cond if cond.get("status") == "True" else None

    for index, (_, says, setting) in enumerate(BAD):
        cond = cluster.wait(lambda i=index: degraded(i), timeout=90, what=f"bad-{index} Degraded")
        assert cond["reason"] == "PolicyViolation", cond
        assert says in cond["message"] and f"tenantPolicy.{setting}" in cond["message"], cond

    def warned() -> set[str] | None:
        events = cluster.get("events", namespace=namespace)["items"]
        names = {
            e["involvedObject"]["name"]
            for e in events
            if e["reason"] == "PolicyViolation" and e["type"] == "Warning"
        }
        return names if len(names) == len(BAD) else None

    assert cluster.wait(warned, timeout=60, what="a warning Event each") == {
        f"bad-{i}" for i in range(len(BAD))
    }
    assert cluster.get("deployments", namespace=namespace)["items"] == []
