"""Disk full during a fetch: `localmodel-runtime fetch` (the init container's command, as a process)
writing into a small tmpfs.

It fails with exit status 1 and one line saying that the disk is full, leaves neither the file nor a
`.partial` behind (nothing the server could load, nothing holding the space), and the operator reads
that line, as the kubelet hands it over (FallbackToLogsOnError), as `Degraded` with reason
`FetchFailed`. Once the disk has room the same command succeeds.

Two ways to run out: a file whose size the server announces is refused before a byte is written; one
of unknown size (no Content-Length) fills the disk as it arrives.

Mounting needs root, as the test suite runs here; the tmpfs is unmounted whatever happens.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from localmodel_operator.status import conditions
from tests.support.http_files_range import FileServer, Served, serve_files
from tests.support.podrunner import fallback_message
from tests.support.runtime_server import run_cli

SIZE = 600 * 1024
DISK = "256k"  # under SIZE: the file cannot fit
ROOMY = "4m"


@pytest.fixture
def server() -> Iterator[FileServer]:
    with serve_files() as state:
        yield state


@pytest.fixture
def models(tmp_path: Path) -> Iterator[Path]:
    """A models directory on a tmpfs of `DISK` bytes."""
    mount = tmp_path / "models"
    mount.mkdir()
    done = _mount("-t", "tmpfs", "-o", f"size={DISK},mode=0755", "tmpfs", str(mount))
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs at {mount} (the tests run as root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False, capture_output=True)


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], check=False, capture_output=True, text=True)


def make_room(mount: Path) -> None:
    done = _mount("-o", f"remount,size={ROOMY}", str(mount))
    assert done.returncode == 0, done.stderr


def fetch_config(tmp_path: Path, url: str, data: bytes) -> Path:
    path = tmp_path / "model.yaml"
    entry = {"filename": "tiny.gguf", "uri": url, "sha256": hashlib.sha256(data).hexdigest()}
    spec = {"name": "m", "backend": "llama", "parameters": {"model": "tiny.gguf"}, "download_files": [entry]}
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def left_in(models: Path) -> list[str]:
    """What a failed fetch left: anything but its lock file (empty, and never loaded)."""
    return sorted(p.name for p in models.iterdir() if not p.name.endswith(".lock"))


def degraded_by(message: str) -> dict[str, Any]:
    """The Degraded condition the operator computes for a pod whose fetch container ended with
    `message` and is being restarted."""
    fetch = {
        "name": "fetch",
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": message}},
    }
    pod = {"metadata": {"name": "m-0"}, "status": {"phase": "Pending", "initContainerStatuses": [fetch]}}
    deployment = {
        "metadata": {"generation": 1},
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 1, "replicas": 1},
    }
    return next(c for c in conditions(1, None, deployment, [pod]) if c["type"] == "Degraded")


@pytest.mark.parametrize("announced", [True, False], ids=["size-announced", "size-unknown"])
def test_a_full_disk_fails_the_fetch_in_one_line_leaves_nothing_and_is_fetch_failed(
    server: FileServer, models: Path, tmp_path: Path, announced: bool
) -> None:
    data = random.Random(7).randbytes(SIZE)
    server.files["/tiny.gguf"] = Served(data, length=announced)
    config = fetch_config(tmp_path, f"{server.url}/tiny.gguf", data)

    failed = run_cli("fetch", "--config", config, "--models-dir", models)
    assert failed.returncode == 1, failed.stderr
    assert "Traceback" not in failed.stderr
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("localmodel-runtime fetch: tiny.gguf ("), last
    assert f"the disk of {models} is full" in last, last
    assert left_in(models) == [], "a failed fetch left files behind"
    if announced:  # refused before a byte was written
        assert "needs 600.0 KiB more" in last, last

    degraded = degraded_by(fallback_message(failed.stderr.encode()))
    assert (degraded["status"], degraded["reason"]) == ("True", "FetchFailed"), degraded
    assert "is full" in degraded["message"] and degraded["message"].startswith("m-0: "), degraded

    make_room(models)
    fetched = run_cli("fetch", "--config", config, "--models-dir", models)
    assert fetched.returncode == 0, fetched.stderr
    assert left_in(models) == ["tiny.gguf"]
    assert (models / "tiny.gguf").read_bytes() == data
