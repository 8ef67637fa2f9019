"""The InferencePool of a LocalModel (Gateway API Inference Extension, `inference.networking.k8s.io/v1`):
its runtime pods as one pool that an endpoint picker balances from their vLLM-named gauges
(`vllm:num_requests_waiting`, `vllm:num_requests_running`, `vllm:kv_cache_usage_perc`).

Pure: the operator creates it when its settings ask for pools and the cluster has the CRD.
"""

from __future__ import annotations

from typing import Any

from .builders import PORT, Manifest, Model

API_VERSION = "inference.networking.k8s.io/v1"
KIND = "InferencePool"
PLURAL = "inferencepools"
CRD_NAME = f"{PLURAL}.inference.networking.k8s.io"


def build_inference_pool(model: Model, endpoint_picker: dict[str, Any] | None) -> Manifest:
    """One pool per LocalModel, named after it, owned by it; `endpoint_picker` is the pool's
    `endpointPickerRef` (the operator setting), when one is configured."""
    spec: dict[str, Any] = {"selector": {"matchLabels": model.selector()}, "targetPorts": [{"number": PORT}]}
    if endpoint_picker:
        spec["endpointPickerRef"] = endpoint_picker
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": model.metadata(model.name), "spec": spec}
