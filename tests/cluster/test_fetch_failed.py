"""A models volume too small for the model, on the real control plane: the whole path from the fetch
init container to the LocalModel's status.

The LocalModel's claim is a directory of the process node; the test mounts a small tmpfs there first.
The init container (`localmodel-runtime fetch`, copying a `file://` model) fails with its one line, the
kubelet's rule (FallbackToLogsOnError) makes that the termination message, and the operator turns it
into `Degraded`/`FetchFailed` with an Event, the message saying the disk is full. Once the volume
has room (the tmpfs remounted larger) the restarted init container fetches the file and the model
becomes Ready. Nothing half-written is left on the volume at any point.

Mounting needs root, as the test suite runs here; the tmpfs is unmounted whatever happens.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fixtures import Cluster
from tests.support.operator_process import OperatorProcess, operator_on

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(400)]

NAME = "cramped"
JsonDict = dict[str, Any]


@pytest.fixture
def operator(control_plane: Cluster, tmp_path: Path) -> Iterator[OperatorProcess]:
    # The image table's registry must name `localmodel` for the process node to run its runtime.
    config = {"registry": "registry.test/localmodel", "tag": "t1"}
    yield from operator_on(control_plane, tmp_path / "operator", config)


@pytest.fixture
def volume(control_plane: Cluster, namespace: str) -> Iterator[Path]:
    """The host directory of the model's claim `<name>-models`, a tmpfs of 128 KiB."""
    path = control_plane.node.pvc_root / namespace / f"{NAME}-models"
    path.mkdir(parents=True)
    done = _mount("-t", "tmpfs", "-o", "size=128k,mode=0777", "tmpfs", str(path))
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs at {path} (the tests run as root): {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=False, capture_output=True)


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], check=False, capture_output=True, text=True)


def local_model(model: Path) -> str:
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    spec = {
        "name": NAME,
        "backend": "llama",
        "parameters": {"model": "tiny.gguf"},
        "download_files": [{"filename": "tiny.gguf", "uri": model.as_uri(), "sha256": digest}],
        "deployment": {"storage": {"size": "1Gi"}, "resources": {"requests": {"cpu": "100m"}}},
    }
    body = {"apiVersion": "localmodel.dev/v1alpha1", "kind": "LocalModel", "metadata": {"name": NAME}}
    return json.dumps({**body, "spec": spec})


def condition(cluster: Cluster, namespace: str, kind: str) -> JsonDict:
    model = cluster.get("localmodel", NAME, namespace)
    found = {c["type"]: c for c in model.get("status", {}).get("conditions") or []}
    return dict(found.get(kind) or {})


def half_written(volume: Path) -> list[str]:
    return sorted(p.name for p in volume.iterdir() if p.name.endswith((".partial", ".validator")))


def test_a_full_models_volume_is_fetch_failed_and_recovers_with_room(
    control_plane: Cluster, namespace: str, operator: OperatorProcess, volume: Path, tiny_gguf: Path
) -> None:
    # Where the pod's processes see it: not under /tmp, which is an emptyDir of the pod.
    source = control_plane.cp.dir / f"{namespace}-tiny.gguf"
    shutil.copyfile(tiny_gguf, source)
    control_plane.apply(local_model(source), namespace)

    def fetch_failed() -> JsonDict | None:
        degraded = condition(control_plane, namespace, "Degraded")
        return degraded if degraded.get("reason") == "FetchFailed" else None

    try:
        degraded = control_plane.wait(fetch_failed, 180, "Degraded: FetchFailed")
    except BaseException:
        print(operator.output(80))
        raise
    assert degraded["status"] == "True", degraded
    assert "tiny.gguf" in degraded["message"] and "is full" in degraded["message"], degraded
    assert "Traceback" not in degraded["message"], degraded
    events = control_plane.get("events", namespace=namespace)["items"]
    assert any(e["reason"] == "FetchFailed" and e["type"] == "Warning" for e in events), events
    assert half_written(volume) == [] and not (volume / "tiny.gguf").exists()

    done = _mount("-o", "remount,size=8m", str(volume))
    assert done.returncode == 0, done.stderr

    def ready() -> JsonDict | None:
        found = condition(control_plane, namespace, "Ready")
        return found if found.get("status") == "True" else None

    control_plane.wait(ready, 240, "the model Ready once its volume has room")
    assert condition(control_plane, namespace, "Degraded")["status"] == "False"
    assert (volume / "tiny.gguf").read_bytes() == tiny_gguf.read_bytes()
    assert half_written(volume) == []
