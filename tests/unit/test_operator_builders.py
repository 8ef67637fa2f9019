"""Pure builders: every example's backend/device combination, without a cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from localmodel_operator.builders import CONFIG_HASH, Model, build_children, config_hash
from localmodel_operator.placement import PlacementError, place
from localmodel_operator.settings import SettingsError, settings_from_dict
from localmodel_runtime.config import LocalModelSpec, parse_model_configs

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "localmodels"
SETTINGS = settings_from_dict({})


def example(name: str) -> Model:
    (doc,) = yaml.safe_load_all((EXAMPLES / f"{name}.yaml").read_text())
    return Model(doc["metadata"]["name"], "models", "uid-1", LocalModelSpec.model_validate(doc["spec"]))


def model(spec: dict[str, Any], name: str = "m") -> Model:
    return Model(name, "ns", "uid-2", LocalModelSpec.model_validate(spec))


def pod_spec(children: Any) -> dict[str, Any]:
    spec: dict[str, Any] = children.deployment["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize(
    ("name", "device", "image_suffix", "gpu_limit", "read_only"),
    [
        ("gemma-3-270m", "cpu", "llama-cpp-cpu", None, True),
        ("koala", "cpu", "llama-cpp-cpu", None, True),
        ("vllm", "nvidia", "vllm-cuda", ("nvidia.com/gpu", "2"), False),
        ("transformers", "nvidia", "transformers-cuda", ("nvidia.com/gpu", "1"), False),
        ("starling-openvino", "intel", "openvino", ("gpu.intel.com/i915", "1"), True),
        ("orca", "nvidia", "autogptq-cuda", ("nvidia.com/gpu", "1"), False),
        ("exllama", "nvidia", "exllamav2-cuda", ("nvidia.com/gpu", "1"), False),
        ("exllama2", "nvidia", "exllamav2-cuda", ("nvidia.com/gpu", "1"), False),
        ("rwkv", "cpu", "rwkv", None, True),
    ],
)
def test_every_example_gets_its_device_image_and_requests(
    name: str, device: str, image_suffix: str, gpu_limit: tuple[str, str] | None, read_only: bool
) -> None:
    m = example(name)
    placement = place(m.spec, SETTINGS)
    assert placement.device == device
    children = build_children(m, placement, 1800)
    spec = pod_spec(children)
    (container,) = spec["containers"]
    assert container["image"] == f"ghcr.io/localmodel/runtime:0.1.0-{image_suffix}"
    limits = container.get("resources", {}).get("limits", {})
    if gpu_limit:
        assert limits[gpu_limit[0]] == gpu_limit[1]
    else:
        assert not any("gpu" in key for key in limits)
    tolerations = spec.get("tolerations", [])
    assert (device == "nvidia") == any(t.get("key") == "nvidia.com/gpu" for t in tolerations)
    # Hardening, the same everywhere.
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is read_only
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 1800
    # Ready follows the first startup probe after the model loaded: probed every second, not every 5.
    assert container["startupProbe"]["periodSeconds"] == 1
    # A stopping pod serves on while its endpoint is removed, well inside the grace period.
    assert container["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", "5"]}}
    assert spec["terminationGracePeriodSeconds"] >= 5 + 25  # preStop + the runtime's graceful shutdown
    assert {v["name"] for v in spec["volumes"]} == {"config", "models", "tmp"}
    # Owned children, discoverable by the router.
    for child in children.all():
        if child["kind"] != "PersistentVolumeClaim":
            assert child["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
        assert child["metadata"]["labels"]["localmodel.dev/model"] == m.name
    assert children.service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]
    assert children.service["metadata"]["annotations"]["localmodel.dev/model-name"] == m.api_name


def test_files_to_download_get_a_fetch_init_container() -> None:
    children = build_children(example("gemma-3-270m"), place(example("gemma-3-270m").spec, SETTINGS), 600)
    (init,) = pod_spec(children)["initContainers"]
    assert init["name"] == "fetch"
    assert init["command"] == ["localmodel-runtime"] and init["args"][0] == "fetch"
    vllm = example("vllm")  # a repository id is loaded by the backend itself, into the hub cache
    vllm_children = build_children(vllm, place(vllm.spec, SETTINGS), 600)
    assert "initContainers" not in pod_spec(vllm_children)
    env = {e["name"]: e.get("value") for e in pod_spec(vllm_children)["containers"][0]["env"]}
    assert env["HF_HOME"] == "/models/.cache/huggingface"


def test_a_projector_uri_gets_the_fetch_init_container_too() -> None:
    local = {"backend": "llama", "parameters": {"model": "m.gguf"}, "mmproj": "mmproj.gguf"}
    vision = model(local)
    assert "initContainers" not in pod_spec(build_children(vision, place(vision.spec, SETTINGS), 600))
    fetched = model({**local, "mmproj": "huggingface://owner/repo/mmproj-f16.gguf"})
    (init,) = pod_spec(build_children(fetched, place(fetched.spec, SETTINGS), 600))["initContainers"]
    assert init["name"] == "fetch"


def test_storage_choices() -> None:
    koala = example("koala")  # storage.size with keepOnDelete: a claim that outlives the LocalModel
    children = build_children(koala, place(koala.spec, SETTINGS), 600)
    assert children.pvc is not None and "ownerReferences" not in children.pvc["metadata"]
    assert children.pvc["spec"]["resources"]["requests"]["storage"] == "10Gi"
    volume = next(v for v in pod_spec(children)["volumes"] if v["name"] == "models")
    assert volume == {"name": "models", "persistentVolumeClaim": {"claimName": "koala-7b-models"}}
    owned = model(
        {"backend": "llama", "deployment": {"storage": {"size": "1Gi", "storageClassName": "fast"}}}
    )
    owned_children = build_children(owned, place(owned.spec, SETTINGS), 600)
    assert owned_children.pvc is not None and owned_children.pvc["metadata"]["ownerReferences"]
    assert owned_children.pvc["spec"]["storageClassName"] == "fast"
    existing = model({"backend": "llama", "deployment": {"storage": {"existingClaim": "shared"}}})
    existing_children = build_children(existing, place(existing.spec, SETTINGS), 600)
    assert existing_children.pvc is None
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "shared"}} in pod_spec(
        existing_children
    )["volumes"]
    # An emptyDir is bounded by the download limit (maxDownloadSize, 100Gi by default) unless the model
    # sets its own; no limit configured, no bound.
    default = model({"backend": "llama"})
    assert {"name": "models", "emptyDir": {"sizeLimit": "100Gi"}} in pod_spec(
        build_children(default, place(default.spec, SETTINGS), 60)
    )["volumes"]
    unbounded = settings_from_dict({"maxDownloadSize": None})
    assert {"name": "models", "emptyDir": {}} in pod_spec(
        build_children(default, place(default.spec, unbounded), 60)
    )["volumes"]
    own = model({"backend": "llama", "deployment": {"storage": {"emptyDirSizeLimit": "5Gi"}}})
    assert {"name": "models", "emptyDir": {"sizeLimit": "5Gi"}} in pod_spec(
        build_children(own, place(own.spec, SETTINGS), 60)
    )["volumes"]


def test_the_fetch_is_bounded_by_the_download_limit_a_model_cannot_lift() -> None:
    spec = {
        "backend": "llama",
        "parameters": {"model": "m.gguf"},
        "download_files": [{"filename": "m.gguf", "uri": "https://example.invalid/m.gguf"}],
        "deployment": {"env": [{"name": "LOCALMODEL_MAX_DOWNLOAD_BYTES", "value": "999999999999999"}]},
    }
    fetching = model(spec)
    settings = settings_from_dict({"maxDownloadSize": "2Gi"})
    (fetch,) = pod_spec(build_children(fetching, place(fetching.spec, settings), 60))["initContainers"]
    limits = [e["value"] for e in fetch["env"] if e["name"] == "LOCALMODEL_MAX_DOWNLOAD_BYTES"]
    assert limits[-1] == str(2 * 1024**3)  # the last value of a name is the one the container sees
    with pytest.raises(SettingsError, match="maxDownloadSize"):
        settings_from_dict({"maxDownloadSize": "lots"})


@pytest.mark.parametrize(
    ("spec", "device", "image_key"),
    [
        ({"backend": "transformers", "type": "OVModelForCausalLM"}, "cpu", "openvino"),
        ({"backend": "transformers", "type": "OVModelForCausalLM", "main_gpu": "AUTO"}, "cpu", "openvino"),
        (
            {"backend": "transformers", "type": "OVModelForFeatureExtraction", "main_gpu": "AUTO:-CPU"},
            "intel",
            "openvino",
        ),
        ({"backend": "transformers", "type": "OVModelForCausalLM", "main_gpu": "GPU"}, "intel", "openvino"),
        ({"backend": "transformers", "main_gpu": "cuda.0"}, "nvidia", "transformers"),
        ({"backend": "transformers", "f16": True}, "nvidia", "transformers"),
        ({"backend": "transformers"}, "cpu", "transformers"),
        ({"backend": "sentencetransformers"}, "cpu", "transformers"),
        ({"backend": "llama", "gpu_layers": 35}, "nvidia", "llama"),
        ({"backend": "llama-cpp", "gpu_layers": 0}, "cpu", "llama"),
        ({"parameters": {"model": "x.gguf"}}, "cpu", "llama"),
        ({"backend": "llama-ggml"}, "cpu", "llama-ggml"),
        ({"backend": "vllm", "deployment": {"gpus": 4}}, "nvidia", "vllm"),
        ({"backend": "llama", "deployment": {"device": "nvidia"}}, "nvidia", "llama"),
        ({"backend": "autogptq"}, "nvidia", "autogptq"),
        ({"backend": "autogptq", "main_gpu": "cpu"}, "cpu", "autogptq"),
        ({"backend": "autogptq", "autogptq": {"device": "cpu"}}, "cpu", "autogptq"),
        ({"backend": "autogptq", "deployment": {"device": "cpu"}}, "cpu", "autogptq"),
    ],
)
def test_auto_device_rules(spec: dict[str, Any], device: str, image_key: str) -> None:
    placement = place(LocalModelSpec.model_validate(spec), SETTINGS)
    assert (placement.device, placement.image_key) == (device, image_key)


def test_gpu_count_prefers_deployment_then_tensor_parallel_size() -> None:
    spec = LocalModelSpec.model_validate(
        {"backend": "vllm", "tensor_parallel_size": 4, "deployment": {"gpus": 2}}
    )
    assert place(spec, SETTINGS).resources["limits"]["nvidia.com/gpu"] == "2"
    spec = LocalModelSpec.model_validate({"backend": "vllm", "tensor_parallel_size": 4})
    assert place(spec, SETTINGS).resources["limits"]["nvidia.com/gpu"] == "4"


@pytest.mark.parametrize(
    ("spec", "reason", "fragment"),
    [
        (
            {"backend": "exllama2", "deployment": {"device": "cpu"}},
            "UnsupportedDevice",
            "exllama2 cannot run on cpu",
        ),
        ({"backend": "vllm", "deployment": {"device": "intel"}}, "UnsupportedDevice", "runs on: nvidia"),
        ({"backend": "whisper"}, "MissingBackend", "'whisper'"),
        ({"parameters": {"model": "weights"}}, "MissingBackend", "none can be guessed"),
    ],
)
def test_impossible_placements_are_explained(spec: dict[str, Any], reason: str, fragment: str) -> None:
    with pytest.raises(PlacementError) as info:
        place(LocalModelSpec.model_validate(spec), SETTINGS)
    assert info.value.reason == reason and fragment in info.value.message


def test_resources_and_placement_fields_from_the_spec() -> None:
    m = model(
        {
            "backend": "llama",
            "deployment": {
                "resources": {"requests": {"cpu": 2}, "limits": {"memory": "4Gi"}},
                "nodeSelector": {"pool": "cpu"},
                "tolerations": [
                    {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
                ],
                "priorityClassName": "high",
                "serviceAccountName": "runner",
                "podAnnotations": {"a": "b"},
                "env": [{"name": "X", "value": "1"}],
                "hfTokenSecretRef": {"name": "hf"},
                "replicas": 3,
            },
        }
    )
    children = build_children(m, place(m.spec, SETTINGS), 600)
    spec = pod_spec(children)
    container = spec["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}
    assert spec["nodeSelector"] == {"pool": "cpu"} and spec["priorityClassName"] == "high"
    assert spec["serviceAccountName"] == "runner"
    assert spec["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
    ]
    env = {e["name"]: e for e in container["env"]}
    assert env["X"]["value"] == "1"
    assert env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf", "key": "HF_TOKEN"}}
    assert children.deployment["spec"]["replicas"] == 3
    assert children.deployment["spec"]["template"]["metadata"]["annotations"]["a"] == "b"


def test_config_hash_rolls_on_model_changes_only() -> None:
    base = {"backend": "llama", "parameters": {"model": "a.gguf"}, "deployment": {"replicas": 1}}
    first = build_children(model(base), place(model(base).spec, SETTINGS), 600)
    scaled = {**base, "deployment": {"replicas": 5}}
    second = build_children(model(scaled), place(model(scaled).spec, SETTINGS), 600)
    changed = {**base, "parameters": {"model": "a.gguf", "temperature": 0.2}}
    third = build_children(model(changed), place(model(changed).spec, SETTINGS), 600)

    def stamp(c: Any) -> str:
        return str(c.deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH])

    assert stamp(first) == stamp(second) == config_hash(first.config_map)
    assert stamp(first) != stamp(third)
    assert first.deployment["spec"]["template"] == second.deployment["spec"]["template"]


def test_config_map_holds_the_model_yaml_the_runtime_loads() -> None:
    m = example("starling-openvino")
    children = build_children(m, place(m.spec, SETTINGS), 600)
    (config,) = parse_model_configs(children.config_map["data"]["model.yaml"])
    assert config.name == "starling-openvino"
    assert config.model_dump(exclude_none=True) == m.spec.model_config_only().model_dump(exclude_none=True)
    assert "deployment" not in children.config_map["data"]["model.yaml"]
    unnamed = model({"backend": "llama"}, name="fallback")
    (named,) = parse_model_configs(
        build_children(unnamed, place(unnamed.spec, SETTINGS), 600).config_map["data"]["model.yaml"]
    )
    assert named.name == "fallback"


def test_image_table_comes_from_settings() -> None:
    settings = settings_from_dict(
        {
            "registry": "reg.local/lm",
            "tag": "dev",
            "runtimeImages": {"llama/cpu": {"image": "{registry}/rt:{tag}"}},
        }
    )
    assert place(LocalModelSpec.model_validate({"backend": "llama"}), settings).image == "reg.local/lm/rt:dev"
    override = LocalModelSpec.model_validate({"backend": "llama", "deployment": {"image": "mine:1"}})
    assert place(override, settings).image == "mine:1"


def test_cluster_runtime_env_reaches_runtime_and_fetch_and_the_model_env_wins() -> None:
    settings = settings_from_dict({"runtimeEnv": [{"name": "HF_ENDPOINT", "value": "http://mirror.test"}]})
    m = example("gemma-3-270m")
    m.spec.deployment.env = [{"name": "HF_ENDPOINT", "value": "http://model.test"}]  # type: ignore[union-attr]
    children = build_children(m, place(m.spec, settings), 1800)
    spec = pod_spec(children)
    for container in (*spec["initContainers"], *spec["containers"]):
        values = [e.get("value") for e in container["env"] if e["name"] == "HF_ENDPOINT"]
        # Later entries win in Kubernetes: the cluster's value first, the model's last.
        assert values == ["http://mirror.test", "http://model.test"], container["name"]


def test_device_supplemental_groups_reach_only_that_devices_pods() -> None:
    from localmodel_operator.settings import SettingsError

    settings = settings_from_dict({"devices": {"intel": {"supplementalGroups": [110]}}})
    assert settings.devices["intel"].resource == "gpu.intel.com/i915"  # merged with the defaults
    intel = example("starling-openvino")
    assert pod_spec(build_children(intel, place(intel.spec, settings), 60))["securityContext"][
        "supplementalGroups"
    ] == [110]
    cpu = example("gemma-3-270m")
    assert (
        "supplementalGroups"
        not in pod_spec(build_children(cpu, place(cpu.spec, settings), 60))["securityContext"]
    )
    with pytest.raises(SettingsError, match=r"devices.intel.supplementalGroups: expected a list of numeric"):
        settings_from_dict({"devices": {"intel": {"supplementalGroups": ["render"]}}})


def test_runtime_env_must_be_env_vars() -> None:
    from localmodel_operator.settings import SettingsError

    with pytest.raises(SettingsError, match=r"runtimeEnv\[0\]"):
        settings_from_dict({"runtimeEnv": ["HF_ENDPOINT=x"]})


def test_the_runtime_logs_each_request() -> None:
    # `kubectl logs` of a runtime pod shows the requests it served (the probes are filtered out).
    children = build_children(example("gemma-3-270m"), place(example("gemma-3-270m").spec, SETTINGS), 600)
    assert "--access-log" in pod_spec(children)["containers"][0]["args"]
