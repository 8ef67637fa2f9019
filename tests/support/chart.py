"""The Helm chart for tests: where it is, the helm binary, and a values set with every option on."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.controlplane import BIN_DIR

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "localmodel"
HELM = BIN_DIR / "helm"
JsonDict = dict[str, Any]


# Every optional feature switched on (rendered by the unit tests, validated by the cluster test).
ALL_FEATURES: JsonDict = {
    "watchNamespaces": ["models-a", "models-b"],
    "operator": {"logLevel": "debug", "extraArgs": ["--watch-timeout=120"]},
    "router": {
        "apiKeys": {"existingSecret": "router-keys"},
        "service": {"type": "NodePort", "nodePort": 30080},
        "ingress": {"enabled": True, "className": "nginx", "tls": [{"secretName": "tls", "hosts": ["a"]}]},
        "autoscaling": {"enabled": True},
        "podDisruptionBudget": {"enabled": True},
        "autoSetup": {"enabled": True, "allowRepositories": ["TheBloke/*"], "maxModels": 3},
    },
    "serviceMonitor": {"enabled": True},
    "networkPolicy": {"enabled": True, "extraFrom": [{"namespaceSelector": {}}]},
}


def set_json(values: JsonDict) -> list[str]:
    """`--set-json key=value` arguments, one per top-level key."""
    args: list[str] = []
    for key, value in values.items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    return args


def run_helm(
    *args: str, env: dict[str, str] | None = None, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run .cache/bin/helm; a missing binary or (with `check`) a failure fails the test.

    No `--kube-version`: scripts/build-k8s.sh stamps helm with its Kubernetes version, as a released helm
    is, so `helm template` and `helm lint` work as a user runs them."""
    if not HELM.exists():
        pytest.fail(f"{HELM} is missing -- run `make k8s-bins`", pytrace=False)
    res = subprocess.run(
        [str(HELM), *args],
        input=input,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )
    if check and res.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res
