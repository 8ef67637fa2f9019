"""The trust boundary in the operator: what a LocalModel may ask of its pod under `tenantPolicy`."""

from __future__ import annotations

from typing import Any

import pytest

from localmodel_operator.policy import TenantPolicy, violations
from localmodel_operator.reconcile import evaluate
from localmodel_operator.settings import SettingsError, settings_from_dict
from localmodel_runtime.config import parse_local_model_spec

DEFAULT = settings_from_dict({})


def deployment(**fields: Any) -> Any:
    spec = parse_local_model_spec({"backend": "llama", "deployment": fields}, source="spec")
    return spec.deployment


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"image": "evil.example/x:1"}, "spec.deployment.image is not allowed"),
        ({"env": [{"name": "LD_PRELOAD", "value": "/models/x.so"}]}, "may not set LD_PRELOAD"),
        ({"env": [{"name": "HF_ENDPOINT", "value": "http://evil"}]}, "may not set HF_ENDPOINT"),
        ({"envFrom": [{"secretRef": {"name": "db"}}]}, "spec.deployment.envFrom is not allowed"),
        (
            {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "db", "key": "k"}}}]},
            "spec.deployment.env[].valueFrom is not allowed",
        ),
        ({"serviceAccountName": "admin"}, "spec.deployment.serviceAccountName is not allowed"),
        ({"podAnnotations": {"a": "b"}}, "spec.deployment.podAnnotations is not allowed"),
        ({"storage": {"existingClaim": "team-data"}}, "spec.deployment.storage.existingClaim is not allowed"),
    ],
)
def test_the_default_policy_refuses_what_a_shared_cluster_should_not_allow(
    fields: dict[str, Any], says: str
) -> None:
    found = violations(deployment(**fields), DEFAULT.tenant_policy)
    assert len(found) == 1 and says in found[0], found
    problem = evaluate("m", "ns", {"backend": "llama", "deployment": fields}, DEFAULT).problem
    assert problem is not None and problem.reason == "PolicyViolation" and says in problem.message


def test_what_the_examples_ask_for_passes_the_default_policy() -> None:
    fields = {
        "replicas": 1,
        "device": "cpu",
        "resources": {"requests": {"cpu": "1"}},
        "storage": {"size": "10Gi", "keepOnDelete": True},
        "loadBalancing": "prefixAffinity",
        "env": [{"name": "OMP_NUM_THREADS", "value": "4"}],
        "hfTokenSecretRef": {"name": "hf", "key": "token"},
    }
    assert violations(deployment(**fields), DEFAULT.tenant_policy) == []


def test_an_admin_opens_the_policy_up_key_by_key_or_all_at_once() -> None:
    opened = settings_from_dict(
        {
            "tenantPolicy": {
                "allowedImagePrefixes": ["registry.example.com/models/"],
                "allowEnvFrom": True,
                "forbiddenEnv": ["LD_PRELOAD"],
            }
        }
    ).tenant_policy
    assert violations(deployment(image="registry.example.com/models/rt:1"), opened) == []
    assert violations(deployment(image="registry.example.com/other/rt:1"), opened)
    assert violations(deployment(envFrom=[{"secretRef": {"name": "db"}}]), opened) == []
    assert violations(deployment(env=[{"name": "HF_ENDPOINT", "value": "https://m"}]), opened) == []
    assert violations(deployment(env=[{"name": "X", "value": "1"}]), TenantPolicy(allow_env=False))
    everything = deployment(
        image="any:1",
        env=[{"name": "LD_PRELOAD", "value": "x"}],
        serviceAccountName="admin",
        podAnnotations={"a": "b"},
        storage={"existingClaim": "c"},
    )
    assert len(violations(everything, DEFAULT.tenant_policy)) == 5
    trusted = settings_from_dict({"tenantPolicy": {"trustedTenants": True}}).tenant_policy
    assert violations(everything, trusted) == []


@pytest.mark.parametrize(
    ("block", "says"),
    [
        ({"allowEnv": "yes"}, "tenantPolicy.allowEnv: expected true or false"),
        ({"forbiddenEnv": "LD_PRELOAD"}, "tenantPolicy.forbiddenEnv: expected a list of strings"),
        ({"allowImages": []}, "tenantPolicy.allowImages: unknown setting"),
    ],
)
def test_a_malformed_policy_is_a_settings_error(block: dict[str, Any], says: str) -> None:
    with pytest.raises(SettingsError, match=says.replace(".", r"\.")):
        settings_from_dict({"tenantPolicy": block})
