"""Run containers with podman for the image tests, under the limits this machine kind grants.

runc cannot raise rlimits without CAP_SYS_RESOURCE, so every container gets explicit nofile/nproc
limits (podman's default nproc is above some hosts' hard limit). Containers are named
`localmodel-test-*` and removed by the code that started them.
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator, Sequence

ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")


def podman(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def run_once(image: str, *command: str, options: Sequence[str] = (), timeout: float = 120) -> str:
    """`podman run --rm` to completion; returns stdout (stderr is in the assertion when it fails)."""
    return podman("run", "--rm", *ULIMITS, *options, image, *command, timeout=timeout).stdout


@contextlib.contextmanager
def container(image: str, *command: str, options: Sequence[str] = ()) -> Iterator[str]:
    """A detached container for the block; yields its name, removes it (forcibly) afterwards."""
    name = f"localmodel-test-{uuid.uuid4().hex[:8]}"
    podman("run", "-d", "--name", name, *ULIMITS, *options, image, *command)
    try:
        yield name
    finally:
        podman("rm", "-f", "-t", "5", name, check=False)


def logs(name: str) -> str:
    result = podman("logs", name, check=False)
    return result.stdout + result.stderr
