"""Pure functions from a LocalModel to the manifests of its children.

No I/O here: every function takes plain data and returns a manifest dict, so each backend/device
combination is unit-tested without a cluster. The handlers apply what these return.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from localmodel_runtime.config import LocalModelSpec, ModelConfig
from localmodel_runtime.config.dump import dump_yaml
from localmodel_runtime.resource import GROUP, KIND, VERSION

from .placement import Placement
from .settings import quantity_bytes

Manifest = dict[str, Any]
PRESTOP_SECONDS = 5
"""How long a stopping runtime keeps serving before SIGTERM (the grace period adds it)."""

MODEL_LABEL = f"{GROUP}/model"
CONFIG_HASH = f"{GROUP}/config-hash"
MODEL_NAME_ANNOTATION = f"{GROUP}/model-name"
CONFIG_DIR = "/etc/localmodel"
MODELS_DIR = "/models"
PORT = 8080
RUNTIME_UID = 65532
# Backends that load Hugging Face repositories by id keep the hub cache on the models volume.
HF_CACHE_BACKENDS = frozenset({"vllm", "transformers", "autogptq", "exllama", "exllama2"})


@dataclass(frozen=True)
class Model:
    """What every builder needs to know about one LocalModel."""

    name: str
    namespace: str
    uid: str
    spec: LocalModelSpec

    @property
    def api_name(self) -> str:
        return self.spec.name or self.name

    def labels(self) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": "localmodel",
            "app.kubernetes.io/component": "runtime",
            "app.kubernetes.io/instance": self.name,
            "app.kubernetes.io/managed-by": "localmodel-operator",
            MODEL_LABEL: self.name,
        }

    def selector(self) -> dict[str, str]:
        return {MODEL_LABEL: self.name, "app.kubernetes.io/component": "runtime"}

    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def metadata(self, name: str, owned: bool = True) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "namespace": self.namespace, "labels": self.labels()}
        if owned:
            meta["ownerReferences"] = [self.owner_reference()]
        return meta


def model_yaml(model: Model) -> str:
    """The normalised LocalAI YAML the runtime loads: the spec without `deployment`, named."""
    config: ModelConfig = model.spec.model_config_only()
    data = config.model_dump(mode="json", exclude_none=True, by_alias=True)
    data["name"] = model.api_name
    return dump_yaml(data)


def config_map_name(model: Model) -> str:
    return f"{model.name}-config"


def pvc_name(model: Model) -> str:
    return f"{model.name}-models"


def build_config_map(model: Model) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": model.metadata(config_map_name(model)),
        "data": {"model.yaml": model_yaml(model)},
    }


def config_hash(config_map: Manifest) -> str:
    """Changes exactly when the runtime's configuration changes: it is what rolls the pods."""
    text = "\0".join(f"{k}={v}" for k, v in sorted(config_map["data"].items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def needs_fetch(spec: LocalModelSpec) -> bool:
    return bool(spec.download_files) or spec.model_uri is not None or spec.mmproj_uri is not None


def build_service(model: Model) -> Manifest:
    meta = model.metadata(model.name)
    meta["annotations"] = {MODEL_NAME_ANNOTATION: model.api_name}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "ClusterIP",
            "selector": model.selector(),
            "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def build_pvc(model: Model) -> Manifest | None:
    """The models PVC the operator creates, when `storage.size` asks for one."""
    storage = model.spec.deployment.storage if model.spec.deployment else None
    if storage is None or storage.size is None:
        return None
    spec: dict[str, Any] = {
        "accessModes": storage.access_modes or ["ReadWriteOnce"],
        "resources": {"requests": {"storage": str(storage.size)}},
    }
    if storage.storage_class_name:
        spec["storageClassName"] = storage.storage_class_name
    # Without an owner it outlives the LocalModel: that is what keepOnDelete means.
    owned = not storage.keep_on_delete
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": model.metadata(pvc_name(model), owned),
        "spec": spec,
    }


def _models_volume(model: Model, max_download: str | None) -> dict[str, Any]:
    storage = model.spec.deployment.storage if model.spec.deployment else None
    if storage and storage.existing_claim:
        return {"name": "models", "persistentVolumeClaim": {"claimName": storage.existing_claim}}
    if storage and storage.size is not None:
        return {"name": "models", "persistentVolumeClaim": {"claimName": pvc_name(model)}}
    empty: dict[str, Any] = {}
    if storage and storage.empty_dir_size_limit is not None:
        empty["sizeLimit"] = str(storage.empty_dir_size_limit)
    elif max_download is not None:
        empty["sizeLimit"] = max_download  # one model must not fill the node's ephemeral storage
    return {"name": "models", "emptyDir": empty}


def _download_limit(placement: Placement) -> list[dict[str, Any]]:
    if placement.max_download is None:
        return []
    return [{"name": "LOCALMODEL_MAX_DOWNLOAD_BYTES", "value": str(quantity_bytes(placement.max_download))}]


def _security_context(placement: Placement) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": placement.read_only_root_filesystem,
        "runAsNonRoot": True,
    }


def _env(model: Model, placement: Placement) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": "HOME", "value": "/tmp"}]
    if placement.backend in HF_CACHE_BACKENDS:
        env.append({"name": "HF_HOME", "value": f"{MODELS_DIR}/.cache/huggingface"})
    # The cluster's own environment (a Hugging Face mirror, a proxy) first: a model's `env` wins.
    env.extend(placement.env)
    deployment = model.spec.deployment
    if deployment and deployment.hf_token_secret_ref:
        ref = deployment.hf_token_secret_ref
        env.append(
            {
                "name": "HF_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key or "HF_TOKEN"}},
            }
        )
    if deployment and deployment.env:
        env.extend(deployment.env)
    return env


STARTUP_PROBE_PERIOD = 1


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 5,
    }


def build_deployment(
    model: Model, placement: Placement, config_map: Manifest, startup_timeout: int
) -> Manifest:
    deployment = model.spec.deployment
    mounts = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "models", "mountPath": MODELS_DIR},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    config_file = f"{CONFIG_DIR}/model.yaml"
    env = _env(model, placement)
    container: dict[str, Any] = {
        "name": "runtime",
        "image": placement.image,
        "command": ["localmodel-runtime"],
        "args": [
            "serve",
            "--config",
            config_file,
            "--models-dir",
            MODELS_DIR,
            "--host",
            "0.0.0.0",
            "--port",
            str(PORT),
            # Each request in the pod's log (`kubectl logs`), as LocalAI's pods show them.
            "--access-log",
        ],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": env,
        "volumeMounts": mounts,
        "securityContext": _security_context(placement),
        "readinessProbe": _probe("/readyz", 5, 3),
        "livenessProbe": _probe("/healthz", 10, 6),
        # Loading can take long; until the model is ready the startup probe holds liveness back. It asks
        # every second: at 5 s, a model loaded in 1 s became Ready only at the second probe, 5 s after
        # start, which was most of a cold start (bench/cold_start.py).
        "startupProbe": _probe(
            "/readyz", STARTUP_PROBE_PERIOD, max(1, math.ceil(startup_timeout / STARTUP_PROBE_PERIOD))
        ),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        # Endpoints are removed while the pod is told to stop: serve on for a few seconds first, so that
        # requests routed in that window (a single-replica rollout) are answered, not refused with 502.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_SECONDS)]}}},
    }
    if deployment and deployment.env_from:
        container["envFrom"] = deployment.env_from
    if placement.resources:
        container["resources"] = placement.resources
    init_containers = []
    if needs_fetch(model.spec):
        init_containers.append(
            {
                "name": "fetch",
                "image": placement.image,
                "command": ["localmodel-runtime"],
                "args": ["fetch", "--config", config_file, "--models-dir", MODELS_DIR],
                # The limit comes last: a model's own `env` cannot lift it.
                "env": [*env, *_download_limit(placement)],
                "volumeMounts": mounts,
                "securityContext": _security_context(placement),
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }
        )
    annotations = {CONFIG_HASH: config_hash(config_map)}
    if deployment and deployment.pod_annotations:
        annotations = {**deployment.pod_annotations, **annotations}
    labels = {**(deployment.pod_labels if deployment and deployment.pod_labels else {}), **model.labels()}
    pod_spec: dict[str, Any] = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNTIME_UID,
            "runAsGroup": RUNTIME_UID,
            "fsGroup": RUNTIME_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
            **(
                {"supplementalGroups": list(placement.supplemental_groups)}
                if placement.supplemental_groups
                else {}
            ),
        },
        "containers": [container],
        "volumes": [
            {"name": "config", "configMap": {"name": config_map["metadata"]["name"]}},
            _models_volume(model, placement.max_download),
            {"name": "tmp", "emptyDir": {}},
        ],
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": PRESTOP_SECONDS + 30,  # preStop, then the runtime's 25 s drain
    }
    if init_containers:
        pod_spec["initContainers"] = init_containers
    if placement.tolerations:
        pod_spec["tolerations"] = placement.tolerations
    if deployment:
        optional = {
            "nodeSelector": deployment.node_selector,
            "affinity": deployment.affinity,
            "priorityClassName": deployment.priority_class_name,
            "serviceAccountName": deployment.service_account_name,
        }
        pod_spec.update({key: value for key, value in optional.items() if value})
    # GPUs are scarce: replace pods one at a time instead of surging a replica that cannot schedule.
    gpu = placement.device != "cpu"
    rolling = {"maxSurge": 0, "maxUnavailable": 1} if gpu else {"maxSurge": 1, "maxUnavailable": 0}
    replicas = deployment.replicas if deployment and deployment.replicas is not None else 1
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": model.metadata(model.name),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": model.selector()},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": rolling},
            "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod_spec},
        },
    }


@dataclass(frozen=True)
class Children:
    config_map: Manifest
    deployment: Manifest
    service: Manifest
    pvc: Manifest | None
    secret: Manifest | None = None
    """The runtime token's Secret (token_secret.py), when runtimes require one."""

    def all(self) -> list[Manifest]:
        """In apply order: what the Deployment mounts or reads exists before it."""
        order = (self.config_map, self.pvc, self.secret, self.service, self.deployment)
        return [m for m in order if m is not None]


def build_children(model: Model, placement: Placement, startup_timeout: int) -> Children:
    config_map = build_config_map(model)
    timeout = (
        model.spec.deployment.startup_timeout_seconds if model.spec.deployment else None
    ) or startup_timeout
    return Children(
        config_map=config_map,
        deployment=build_deployment(model, placement, config_map, timeout),
        service=build_service(model),
        pvc=build_pvc(model),
    )
