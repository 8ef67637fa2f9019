"""The operator's configuration: the runtime image table, devices and defaults.

Loaded from a YAML file (`--config` or `LOCALMODEL_OPERATOR_CONFIG`; the Helm chart mounts its values
there) merged over the packaged `defaults.yaml`. Nothing about images lives in code.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from localmodel_runtime.gallery import GallerySource
from localmodel_runtime.merge import deep_merge
from localmodel_runtime.settings_file import gallery_sources_from, read_mapping

from .policy import PolicyError, TenantPolicy, policy_from_dict

CONFIG_ENV = "LOCALMODEL_OPERATOR_CONFIG"


class SettingsError(ValueError):
    """The operator's configuration is unusable; the message says which key."""


@dataclass(frozen=True)
class ImageEntry:
    image: str
    read_only_root_filesystem: bool = True


@dataclass(frozen=True)
class DeviceEntry:
    resource: str | None = None
    """Extended resource requested per GPU (None for cpu)."""
    tolerations: tuple[dict[str, Any], ...] = ()
    supplemental_groups: tuple[int, ...] = ()
    """Groups the runtime pod joins to open the device nodes (e.g. the hosts' `render` group for
    /dev/dri when the container runtime does not hand devices to the pod's user)."""


@dataclass(frozen=True)
class Preload:
    """A gallery entry the operator installs at start-up when no LocalModel of that name exists."""

    entry: str
    namespace: str
    name: str | None = None


@dataclass(frozen=True)
class OperatorSettings:
    field_manager: str = "localmodel-operator"
    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; empty means all."""
    images: dict[str, ImageEntry] = field(default_factory=dict)
    """"<backend>/<device>" → runtime image."""
    devices: dict[str, DeviceEntry] = field(default_factory=dict)
    default_resources: dict[str, Any] = field(default_factory=dict)
    startup_timeout_seconds: int = 1800
    galleries: tuple[GallerySource, ...] = ()
    preload: tuple[Preload, ...] = ()
    runtime_env: tuple[dict[str, Any], ...] = ()
    """Kubernetes EnvVar objects added to every runtime and fetch container (e.g. HF_ENDPOINT)."""
    max_download: str | None = "100Gi"
    """The largest file a model's fetch may write (a Kubernetes quantity; None: no limit); also the
    default `sizeLimit` of a models emptyDir, so that one model cannot fill a node's disk."""
    inference_pool: bool = False
    """Whether each LocalModel gets an InferencePool (Gateway API Inference Extension)."""
    endpoint_picker: dict[str, Any] | None = None
    """The pools' `endpointPickerRef`."""
    tenant_policy: TenantPolicy = field(default_factory=TenantPolicy)
    """What a LocalModel may ask of its pod (policy.py)."""
    runtime_key_file: str | None = None
    """The release key's file: each runtime then answers only callers with its token (the router)."""

    def image_for(self, backend: str, device: str) -> ImageEntry | None:
        return self.images.get(f"{backend}/{device}")


def _defaults() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("defaults.yaml").read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def _group_ids(device: str, groups: Any) -> tuple[int, ...]:
    if not isinstance(groups, list | tuple) or not all(isinstance(g, int) and g >= 0 for g in groups):
        raise SettingsError(
            f"devices.{device}.supplementalGroups: expected a list of numeric group IDs, got {groups!r}"
        )
    return tuple(groups)


def settings_from_dict(data: dict[str, Any]) -> OperatorSettings:
    merged = deep_merge(_defaults(), data)
    registry, tag = str(merged.get("registry", "")), str(merged.get("tag", ""))
    images = {}
    for key, entry in (merged.get("runtimeImages") or {}).items():
        if "/" not in key or not isinstance(entry, dict) or "image" not in entry:
            raise SettingsError(f"runtimeImages.{key}: expected '<backend>/<device>: {{image: ...}}'")
        image = str(entry["image"]).format(registry=registry, tag=tag)
        images[key] = ImageEntry(image, bool(entry.get("readOnlyRootFilesystem", True)))
    devices = {
        name: DeviceEntry(
            entry.get("resource"),
            tuple(entry.get("tolerations") or ()),
            _group_ids(name, entry.get("supplementalGroups") or ()),
        )
        for name, entry in (merged.get("devices") or {}).items()
    }
    return OperatorSettings(
        field_manager=str(merged.get("fieldManager", "localmodel-operator")),
        namespaces=tuple(merged.get("namespaces") or ()),
        images=images,
        devices=devices,
        default_resources=dict(merged.get("defaultResources") or {}),
        startup_timeout_seconds=int(merged.get("startupTimeoutSeconds", 1800)),
        galleries=tuple(_galleries(merged.get("galleries") or [])),
        preload=tuple(_preload(merged.get("preload") or [])),
        runtime_env=tuple(_runtime_env(merged.get("runtimeEnv") or [])),
        max_download=_quantity("maxDownloadSize", merged.get("maxDownloadSize")),
        **_inference_pool(merged.get("inferencePool") or {}),
        tenant_policy=_tenant_policy(merged.get("tenantPolicy") or {}),
        runtime_key_file=str(merged.get("runtimeKeyFile") or "") or None,
    )


def _tenant_policy(block: Any) -> TenantPolicy:
    try:
        return policy_from_dict(block)
    except PolicyError as exc:
        raise SettingsError(str(exc)) from None


_QUANTITY = re.compile(r"([0-9]+)(Ki|Mi|Gi|Ti|Pi|K|M|G|T|P)?")
_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_UNITS.update({f"{u}i": 1024 ** (i + 1) for i, u in enumerate("KMGTP")})


def quantity_bytes(value: str) -> int:
    """Bytes of a Kubernetes quantity such as `100Gi` or `500M` (integers with a binary or SI suffix)."""
    match = _QUANTITY.fullmatch(value.strip())
    if match is None:
        raise ValueError(value)
    return int(match.group(1)) * _UNITS[match.group(2) or ""]


def _quantity(key: str, value: Any) -> str | None:
    if value in (None, "", 0):
        return None
    try:
        quantity_bytes(str(value))
    except ValueError:
        raise SettingsError(f"{key}: {value!r} is not a size such as 100Gi or 500M") from None
    return str(value)


def _inference_pool(block: Any) -> dict[str, Any]:
    if not isinstance(block, dict) or not isinstance(block.get("enabled", False), bool):
        raise SettingsError("inferencePool: expected {enabled: true|false, endpointPickerRef: {...}}")
    picker = block.get("endpointPickerRef") or None
    if picker is not None and (not isinstance(picker, dict) or not picker.get("name")):
        raise SettingsError("inferencePool.endpointPickerRef: expected {name, port: {number}, ...}")
    return {"inference_pool": bool(block.get("enabled", False)), "endpoint_picker": picker}


def _galleries(items: list[Any]) -> list[GallerySource]:
    try:
        return gallery_sources_from(items)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def _runtime_env(items: list[Any]) -> list[dict[str, Any]]:
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise SettingsError(f"runtimeEnv[{index}]: expected a Kubernetes EnvVar ({{name, value}})")
    return [dict(item) for item in items]


def _preload(items: list[Any]) -> list[Preload]:
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not item.get("entry") or not item.get("namespace"):
            raise SettingsError(f"preload[{i}]: expected {{entry, namespace, name?}}")
        out.append(Preload(str(item["entry"]), str(item["namespace"]), item.get("name")))
    return out


def load_settings(path: Path | None = None) -> OperatorSettings:
    """Settings from `path`, else from $LOCALMODEL_OPERATOR_CONFIG, else the packaged defaults."""
    if path is None and os.environ.get(CONFIG_ENV):
        path = Path(os.environ[CONFIG_ENV])
    if path is None:
        return settings_from_dict({})
    try:
        data = read_mapping(path)
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc
    return settings_from_dict(data)
