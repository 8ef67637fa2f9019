"""`spec.deployment`: Kubernetes placement of a LocalModel, camelCase as Kubernetes spells things.

LocalAI has no such block; it is ours. The operator reads it, the router reads `loadBalancing` and
`autoscaling`, and the CRD is generated from these classes like the rest of the spec.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from annotated_types import Ge
from pydantic import BaseModel, ConfigDict, Field, model_validator

Device = Literal["auto", "cpu", "nvidia", "intel"]
LoadBalancing = Literal["leastInFlight", "prefixAffinity", "loadAware"]
"""How the router spreads a model's requests over its endpoints."""
DEFAULT_LOAD_BALANCING: LoadBalancing = "leastInFlight"
DEFAULT_SCALE_DOWN_DELAY_SECONDS = 600
"""What the router uses when `autoscaling.scaleDownDelaySeconds` is unset, in a cluster and locally."""
Quantity = int | str
"""A Kubernetes quantity (`1`, `500m`, `16Gi`)."""


def opt(description: str, **kwargs: Any) -> Any:
    return Field(default=None, description=description, **kwargs)


class K8sBlock(BaseModel):
    # Kubernetes objects reject unknown fields here through the CRD (no preserve-unknown-fields).
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ResourceRequirements(K8sBlock):
    limits: dict[str, Quantity] | None = opt("Resource limits (cpu, memory, …).")
    requests: dict[str, Quantity] | None = opt("Resource requests (cpu, memory, …).")


class Toleration(K8sBlock):
    key: str | None = opt("Taint key.")
    operator: Literal["Exists", "Equal"] | None = opt("Exists or Equal.")
    value: str | None = opt("Taint value.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = opt("Taint effect.")
    toleration_seconds: int | None = opt("Seconds a NoExecute taint is tolerated.", alias="tolerationSeconds")


class Autoscaling(K8sBlock):
    min_replicas: Annotated[int, Ge(0)] | None = opt(
        "Fewest replicas; 0 lets the router scale the model to zero when idle.", alias="minReplicas"
    )
    max_replicas: Annotated[int, Ge(1)] | None = opt(
        "Most replicas; above 1 the router adds and removes replicas with the load.", alias="maxReplicas"
    )
    target_in_flight: Annotated[int, Ge(1)] | None = opt(
        "Requests in flight per replica the router's load autoscaler aims for (default 4).",
        alias="targetInFlight",
    )
    scale_down_delay_seconds: Annotated[int, Ge(0)] | None = opt(
        "Idle seconds before a model with minReplicas 0 is scaled to zero, and that the load must stay "
        f"low before replicas are removed (default {DEFAULT_SCALE_DOWN_DELAY_SECONDS}).",
        alias="scaleDownDelaySeconds",
    )

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        low, high = self.min_replicas, self.max_replicas
        if low is not None and high is not None and low > high:
            raise ValueError("autoscaling.minReplicas must not exceed maxReplicas")
        return self


class SecretKeyRef(K8sBlock):
    name: str = Field(description="Secret name (same namespace).")
    key: str | None = opt("Key in the Secret (default HF_TOKEN).")


class Storage(K8sBlock):
    existing_claim: str | None = opt("Use this existing PersistentVolumeClaim.", alias="existingClaim")
    size: Quantity | None = opt("Create a PersistentVolumeClaim of this size.")
    storage_class_name: str | None = opt("Storage class of the created claim.", alias="storageClassName")
    access_modes: list[str] | None = opt("Access modes of the created claim.", alias="accessModes")
    keep_on_delete: bool | None = opt(
        "Keep the created claim when the LocalModel is deleted (default false).", alias="keepOnDelete"
    )
    empty_dir_size_limit: Quantity | None = opt(
        "Size limit of the emptyDir used when no claim is configured.", alias="emptyDirSizeLimit"
    )

    @model_validator(mode="after")
    def _one_source(self) -> Storage:
        if self.existing_claim and self.size is not None:
            raise ValueError("storage.existingClaim and storage.size are mutually exclusive")
        return self


class DeploymentSpec(K8sBlock):
    """Where and how the model's runtime pods run."""

    replicas: Annotated[int, Ge(0)] | None = opt("Replicas (default 1); the scale subresource sets it.")
    device: Device | None = opt(
        "auto (default): chosen from the backend and its settings; or cpu, nvidia, intel."
    )
    gpus: Annotated[int, Ge(1)] | None = opt("GPUs per replica (default tensor_parallel_size, else 1).")
    image: str | None = opt("Runtime image; overrides the operator's image table.")
    resources: ResourceRequirements | None = opt("Container resources, merged over the device's requests.")
    node_selector: dict[str, str] | None = opt("Node selector.", alias="nodeSelector")
    tolerations: list[Toleration] | None = opt("Tolerations, added to the device's.")
    affinity: dict[str, Any] | None = opt("Pod affinity (a Kubernetes Affinity).")
    priority_class_name: str | None = opt("Priority class.", alias="priorityClassName")
    env: list[dict[str, Any]] | None = opt("Extra environment variables (Kubernetes EnvVar).")
    env_from: list[dict[str, Any]] | None = opt("Extra environment sources (EnvFromSource).", alias="envFrom")
    pod_annotations: dict[str, str] | None = opt("Annotations on the pods.", alias="podAnnotations")
    pod_labels: dict[str, str] | None = opt("Extra labels on the pods.", alias="podLabels")
    service_account_name: str | None = opt("Service account of the pods.", alias="serviceAccountName")
    autoscaling: Autoscaling | None = opt("Autoscaling and scale to zero.")
    load_balancing: LoadBalancing | None = opt(
        "How the router spreads requests: leastInFlight (default), prefixAffinity (for prompt caches) or "
        "loadAware (scores each replica by its queue, KV-cache use and cached prompt prefixes, as polled "
        "from the replica).",
        alias="loadBalancing",
    )
    hf_token_secret_ref: SecretKeyRef | None = opt(
        "Secret holding a Hugging Face token for gated downloads.", alias="hfTokenSecretRef"
    )
    storage: Storage | None = opt("The models volume: emptyDir (default), an existing claim, or a new one.")
    startup_timeout_seconds: Annotated[int, Ge(30)] | None = opt(
        "How long a pod may take to load its model before it is restarted (default 1800).",
        alias="startupTimeoutSeconds",
    )
