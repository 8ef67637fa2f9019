"""Which device and image a LocalModel gets: decided in one place, from one table.

`device: auto` follows DESIGN.md: vllm, exllama and exllama2 need NVIDIA; autogptq runs on NVIDIA unless
`main_gpu` (or the legacy `autogptq.device`) says `cpu`; transformers with an OpenVINO type runs on Intel
(or on the CPU when main_gpu asks for CPU or plain AUTO); transformers with `main_gpu: cuda…` or `f16`
wants NVIDIA; llama with `gpu_layers > 0` wants NVIDIA; everything else runs on the CPU. The
(backend, device) → image table comes from the operator's settings; a pair the table lacks is a
combination that cannot run (reason `UnsupportedDevice`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from localmodel_operator.errors import OperatorException
from localmodel_runtime.config import LocalModelSpec, canonical_backend, guess_backend

from .settings import OperatorSettings

NVIDIA_ONLY = frozenset({"vllm", "exllama", "exllama2"})


class PlacementError(OperatorException):
    """The spec cannot be placed; `reason` is the condition reason (UnsupportedDevice, MissingBackend)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Placement:
    backend: str
    """Canonical backend name."""
    image_key: str
    """The image table's backend column: the backend, or `openvino` for OpenVINO model types."""
    device: str
    image: str
    read_only_root_filesystem: bool
    gpus: int
    resources: dict[str, Any] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    env: list[dict[str, Any]] = field(default_factory=list)
    """Environment every runtime container of the cluster gets (settings `runtimeEnv`)."""
    supplemental_groups: tuple[int, ...] = ()
    """The device's groups (settings `devices.<device>.supplementalGroups`)."""
    max_download: str | None = None
    """The largest model download (settings `maxDownloadSize`, a Kubernetes quantity)."""


def resolve_backend(spec: LocalModelSpec) -> str:
    name = spec.backend or guess_backend(spec.model_file)
    backend = canonical_backend(name)
    if backend is None:
        known = "llama, llama-ggml, vllm, transformers, autogptq, exllama, exllama2, rwkv"
        what = (
            f"backend {name!r} is not one localmodel serves" if name else "no backend and none can be guessed"
        )
        raise PlacementError("MissingBackend", f"{what} (known: {known})")
    return backend


def _is_openvino(spec: LocalModelSpec) -> bool:
    return (spec.type or "").startswith("OV")


def auto_device(spec: LocalModelSpec, backend: str) -> str:
    main_gpu = (spec.main_gpu or "").strip()
    if backend in NVIDIA_ONLY:
        return "nvidia"
    if backend == "autogptq":
        legacy = (spec.autogptq.device if spec.autogptq else None) or ""
        return "cpu" if "cpu" in (main_gpu.lower(), legacy.strip().lower()) else "nvidia"
    if backend == "transformers":
        if _is_openvino(spec):
            return "cpu" if main_gpu.upper() in ("", "CPU", "AUTO") else "intel"
        if main_gpu.lower().startswith("cuda") or spec.f16:
            return "nvidia"
        return "cpu"
    if backend in ("llama", "llama-ggml") and (spec.gpu_layers or 0) > 0:
        return "nvidia"
    return "cpu"


def gpu_count(spec: LocalModelSpec) -> int:
    deployment = spec.deployment
    if deployment and deployment.gpus:
        return deployment.gpus
    return spec.tensor_parallel_size or 1


def _merge_resources(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("requests", "limits"):
        merged = {**(base.get(kind) or {}), **(override.get(kind) or {})}
        if merged:
            out[kind] = {key: str(value) for key, value in merged.items()}
    return out


def place(spec: LocalModelSpec, settings: OperatorSettings) -> Placement:
    """The device, image, resources and tolerations for this spec, or a PlacementError."""
    backend = resolve_backend(spec)
    requested = (spec.deployment.device if spec.deployment else None) or "auto"
    device = auto_device(spec, backend) if requested == "auto" else requested
    image_key = "openvino" if backend == "transformers" and _is_openvino(spec) else backend
    entry = settings.image_for(image_key, device)
    if entry is None:
        able = sorted(key.split("/")[1] for key in settings.images if key.split("/")[0] == image_key)
        raise PlacementError(
            "UnsupportedDevice",
            f"backend {backend}{' (OpenVINO)' if image_key == 'openvino' else ''} cannot run on {device}"
            + (f"; it runs on: {', '.join(able)}" if able else ""),
        )
    device_entry = settings.devices.get(device)
    gpus = gpu_count(spec) if device in ("nvidia", "intel") else 0
    base = dict(settings.default_resources)
    user = (
        spec.deployment.resources.model_dump(exclude_none=True)
        if spec.deployment and spec.deployment.resources
        else {}
    )
    resources = _merge_resources(base, user)
    tolerations: list[dict[str, Any]] = []
    if device_entry and device_entry.resource:
        count = gpus if device == "nvidia" else 1
        # Extended resources must be equal in requests and limits; limits alone imply the request.
        resources.setdefault("limits", {})[device_entry.resource] = str(count)
        resources.get("requests", {}).pop(device_entry.resource, None)
        tolerations.extend(dict(t) for t in device_entry.tolerations)
    if spec.deployment and spec.deployment.tolerations:
        tolerations.extend(
            t.model_dump(exclude_none=True, by_alias=True) for t in spec.deployment.tolerations
        )
    return Placement(
        backend=backend,
        image_key=image_key,
        device=device,
        image=(spec.deployment.image if spec.deployment and spec.deployment.image else entry.image),
        read_only_root_filesystem=entry.read_only_root_filesystem,
        gpus=gpus if device == "nvidia" else (1 if device == "intel" else 0),
        resources=resources,
        tolerations=tolerations,
        env=[dict(item) for item in settings.runtime_env],
        supplemental_groups=device_entry.supplemental_groups if device_entry else (),
        max_download=settings.max_download,
    )
