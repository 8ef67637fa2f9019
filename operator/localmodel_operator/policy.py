"""The trust boundary: what a LocalModel may ask of its runtime pod.

Whoever may create a LocalModel gets a pod the operator creates: without limits that is as much as
creating any pod (any image, `LD_PRELOAD`, a service account) and reading any Secret of the namespace
(`envFrom`). The admin sets the limits in the operator's configuration (`tenantPolicy`); the chart
installs the same rules as a ValidatingAdmissionPolicy (templates/admission-policy.yaml) so that
`kubectl apply` is refused, and the operator checks them again for clusters without the policy
(`Degraded`, reason `PolicyViolation`). The messages here and in the policy say the same thing.
Pure: a validated `spec.deployment` in, the violations out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from localmodel_operator.errors import OperatorException
from localmodel_runtime.config import DeploymentSpec

DEFAULT_FORBIDDEN_ENV = (
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONUSERBASE",
    "HF_ENDPOINT",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
)
"""Names that change which code runs, where secrets go or whom downloads trust."""


class PolicyError(OperatorException, ValueError):
    """The `tenantPolicy` block of the operator's configuration is malformed."""


@dataclass(frozen=True)
class TenantPolicy:
    """`tenantPolicy` in the operator's configuration (chart: `operator.config.tenantPolicy`)."""

    trusted_tenants: bool = False
    """Every LocalModel author is trusted (a single-team cluster): nothing below is checked."""
    allowed_image_prefixes: tuple[str, ...] = ()
    """`deployment.image` must start with one of these; empty: only the operator's image table."""
    allow_env: bool = True
    """`deployment.env` with plain values (names in `forbidden_env` never)."""
    allow_env_from: bool = False
    """`deployment.envFrom` and `env[].valueFrom`: reading Secrets and ConfigMaps of the namespace."""
    allow_service_account_name: bool = False
    allow_pod_annotations: bool = False
    allow_existing_claim: bool = False
    """`deployment.storage.existingClaim`: mounting any claim of the namespace."""
    forbidden_env: tuple[str, ...] = DEFAULT_FORBIDDEN_ENV


KEYS = {
    "trustedTenants": "trusted_tenants",
    "allowEnv": "allow_env",
    "allowEnvFrom": "allow_env_from",
    "allowServiceAccountName": "allow_service_account_name",
    "allowPodAnnotations": "allow_pod_annotations",
    "allowExistingClaim": "allow_existing_claim",
}


def policy_from_dict(block: Any) -> TenantPolicy:
    if not isinstance(block, dict):
        raise PolicyError("tenantPolicy: expected a mapping")
    values: dict[str, Any] = {}
    for key, value in block.items():
        if key in KEYS:
            if not isinstance(value, bool):
                raise PolicyError(f"tenantPolicy.{key}: expected true or false, got {value!r}")
            values[KEYS[key]] = value
        elif key in ("allowedImagePrefixes", "forbiddenEnv"):
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise PolicyError(f"tenantPolicy.{key}: expected a list of strings, got {value!r}")
            values["allowed_image_prefixes" if key == "allowedImagePrefixes" else "forbidden_env"] = tuple(
                value
            )
        else:
            raise PolicyError(f"tenantPolicy.{key}: unknown setting")
    return TenantPolicy(**values)


def _not_allowed(field: str, setting: str) -> str:
    return f"spec.deployment.{field} is not allowed by the cluster's policy (tenantPolicy.{setting})"


def violations(deployment: DeploymentSpec | None, policy: TenantPolicy) -> list[str]:
    """What `deployment` asks for that `policy` does not allow, one message each (empty: nothing)."""
    if policy.trusted_tenants or deployment is None:
        return []
    found: list[str] = []
    image = deployment.image
    if image is not None and not any(image.startswith(p) for p in policy.allowed_image_prefixes):
        found.append(
            "spec.deployment.image is not allowed by the cluster's policy: images must start with one of "
            f"{json.dumps(list(policy.allowed_image_prefixes))} (tenantPolicy.allowedImagePrefixes)"
        )
    env = deployment.env or []
    if env and not policy.allow_env:
        found.append(_not_allowed("env", "allowEnv"))
    names = sorted({str(e.get("name")) for e in env if e.get("name") in policy.forbidden_env})
    if names:
        found.append(f"spec.deployment.env may not set {', '.join(names)} (tenantPolicy.forbiddenEnv)")
    if not policy.allow_env_from:
        if deployment.env_from:
            found.append(_not_allowed("envFrom", "allowEnvFrom"))
        if any("valueFrom" in e for e in env):
            found.append(_not_allowed("env[].valueFrom", "allowEnvFrom"))
    if deployment.service_account_name and not policy.allow_service_account_name:
        found.append(_not_allowed("serviceAccountName", "allowServiceAccountName"))
    if deployment.pod_annotations and not policy.allow_pod_annotations:
        found.append(_not_allowed("podAnnotations", "allowPodAnnotations"))
    storage = deployment.storage
    if storage is not None and storage.existing_claim and not policy.allow_existing_claim:
        found.append(_not_allowed("storage.existingClaim", "allowExistingClaim"))
    return found
