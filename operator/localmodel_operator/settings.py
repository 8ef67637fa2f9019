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
from typing import Annotated, Any

import yaml
from pydantic import Field, field_validator

from localmodel_operator.errors import OperatorException
from localmodel_runtime.gallery import GallerySource
from localmodel_runtime.merge import deep_merge
from localmodel_runtime.settings_file import FileModel, GalleryItem, NonEmpty, read_mapping, validate_file

from .policy import PolicyError, TenantPolicy, policy_from_dict

CONFIG_ENV = "LOCALMODEL_OPERATOR_CONFIG"


class SettingsError(OperatorException, ValueError):
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


class _ImageItem(FileModel):
    image: NonEmpty
    readOnlyRootFilesystem: bool = True


class _DeviceItem(FileModel):
    resource: str | None = None
    tolerations: list[dict[str, Any]] = []
    supplementalGroups: list[int] = []

    @field_validator("supplementalGroups", mode="before")
    @classmethod
    def _group_ids(cls, groups: Any) -> Any:
        if not isinstance(groups, list) or not all(type(g) is int and g >= 0 for g in groups):
            raise ValueError(f"expected a list of numeric group IDs, got {groups!r}")
        return groups


class _PreloadItem(FileModel):
    entry: NonEmpty
    namespace: NonEmpty
    name: str | None = None


class _EnvVar(FileModel, extra="allow"):
    """A Kubernetes EnvVar: `name` plus `value` or `valueFrom`, passed on as written."""

    name: NonEmpty


class _EndpointPicker(FileModel, extra="allow"):
    """An InferencePool's `endpointPickerRef` ({name, port: {number}, ...}), passed on as written."""

    name: NonEmpty


class _InferencePool(FileModel):
    enabled: Annotated[bool, Field(strict=True)] = False
    endpointPickerRef: _EndpointPicker | None = None

    @field_validator("endpointPickerRef", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return value or None  # the chart's default is {}


class _OperatorFile(FileModel, extra="ignore"):
    """The operator's YAML (camelCase, as Helm values); keys of the chart it does not read are ignored."""

    fieldManager: NonEmpty = "localmodel-operator"
    namespaces: list[NonEmpty] = []
    registry: str = ""
    tag: str = ""
    runtimeImages: dict[str, _ImageItem] = {}
    devices: dict[str, _DeviceItem] = {}
    defaultResources: dict[str, Any] = {}
    startupTimeoutSeconds: Annotated[int, Field(gt=0)] = 1800
    galleries: list[GalleryItem] = []
    preload: list[_PreloadItem] = []
    runtimeEnv: list[_EnvVar] = []
    maxDownloadSize: str | int | None = None
    inferencePool: _InferencePool = _InferencePool()
    tenantPolicy: dict[str, Any] = {}
    runtimeKeyFile: str | None = None

    @field_validator("runtimeImages")
    @classmethod
    def _backend_slash_device(cls, images: dict[str, _ImageItem]) -> dict[str, _ImageItem]:
        for key in images:
            if "/" not in key:
                raise ValueError(f"{key!r}: expected '<backend>/<device>: {{image: ...}}'")
        return images


def settings_from_dict(data: dict[str, Any]) -> OperatorSettings:
    try:
        file = validate_file(_OperatorFile, deep_merge(_defaults(), data))
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    images = {
        key: ImageEntry(
            entry.image.format(registry=file.registry, tag=file.tag), entry.readOnlyRootFilesystem
        )
        for key, entry in file.runtimeImages.items()
    }
    devices = {
        name: DeviceEntry(entry.resource, tuple(entry.tolerations), tuple(entry.supplementalGroups))
        for name, entry in file.devices.items()
    }
    picker = file.inferencePool.endpointPickerRef
    return OperatorSettings(
        field_manager=file.fieldManager,
        namespaces=tuple(file.namespaces),
        images=images,
        devices=devices,
        default_resources=dict(file.defaultResources),
        startup_timeout_seconds=file.startupTimeoutSeconds,
        galleries=tuple(item.source() for item in file.galleries),
        preload=tuple(Preload(item.entry, item.namespace, item.name) for item in file.preload),
        runtime_env=tuple(item.model_dump() for item in file.runtimeEnv),
        max_download=_quantity("maxDownloadSize", file.maxDownloadSize),
        inference_pool=file.inferencePool.enabled,
        endpoint_picker=picker.model_dump() if picker is not None else None,
        tenant_policy=_tenant_policy(file.tenantPolicy),
        runtime_key_file=file.runtimeKeyFile or None,
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
