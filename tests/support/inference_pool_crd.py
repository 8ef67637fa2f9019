"""The upstream InferencePool CRD (Gateway API Inference Extension), taken from its Go module through the
module proxy as the control plane's binaries are: the real schema the operator's pools must satisfy."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

MODULE = "sigs.k8s.io/gateway-api-inference-extension"
VERSION = "v1.6.2"
CRD_FILE = "config/crd/bases/inference.networking.k8s.io_inferencepools.yaml"


def inference_pool_crd() -> Path:
    """The CRD file of the pinned module version (downloaded into Go's module cache once)."""
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    with tempfile.TemporaryDirectory() as outside_any_module:
        result = subprocess.run(
            ["go", "mod", "download", "-json", f"{MODULE}@{VERSION}"],
            capture_output=True,
            text=True,
            env=env,
            cwd=outside_any_module,
            timeout=600,
            check=False,
        )
    if result.returncode != 0:
        pytest.fail(f"go mod download {MODULE}@{VERSION} failed:\n{result.stdout}\n{result.stderr}")
    path = Path(json.loads(result.stdout)["Dir"]) / CRD_FILE
    assert path.is_file(), f"{CRD_FILE} is not in {MODULE}@{VERSION}"
    return path
