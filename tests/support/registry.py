"""A real container registry for tests: the CNCF distribution `registry` (scripts/build-node.sh).

`Registry` serves plain HTTP on 127.0.0.1 on a free port, storing blobs under a directory of the
test's own, as a user's private registry would (push with `--tls-verify=false`, the way container
tools treat a localhost registry). `start()` waits (bounded) for `/v2/` to answer; a registry that
exits or never answers raises with the end of its log. `stop()` terminates it (then kills).
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support.controlplane import BIN_DIR
from tests.support.net import free_port
from tests.support.processes import StartStop, stop_process, wait_answering

REGISTRY_BINARY: Path = BIN_DIR / "registry"


class RegistryError(RuntimeError):
    pass


class Registry(StartStop):
    def __init__(self, root: Path, binary: Path = REGISTRY_BINARY) -> None:
        self.root = root
        self.binary = binary
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        self.log_path = root / "registry.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        if not self.binary.exists():
            raise RegistryError(f"{self.binary} is missing: run scripts/build-node.sh")
        config = self.root / "config.yml"
        # No auth, no TLS, filesystem storage: the smallest configuration `registry serve` accepts;
        # deletes enabled so a test can remove what it pushed.
        config.write_text(
            "version: 0.1\n"
            "log: {level: info}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.root / 'data'}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: {self.address}}}\n",
            encoding="utf-8",
        )
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [str(self.binary), "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        problem = wait_answering(self._process, f"{self.url}/v2/", timeout)
        if problem is not None:
            self.stop()
            raise RegistryError(f"registry {problem}:\n{self.log()}")

    def stop(self, grace: float = 10.0) -> None:
        if self._process is None:
            return
        stop_process(self._process, grace)
        self._process = None

    def log(self, lines: int = 30) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def repositories(self) -> list[str]:
        reply = httpx.get(f"{self.url}/v2/_catalog", timeout=10)
        reply.raise_for_status()
        return list(reply.json().get("repositories") or [])

    def tags(self, repository: str) -> list[str]:
        reply = httpx.get(f"{self.url}/v2/{repository}/tags/list", timeout=10)
        reply.raise_for_status()
        return list(reply.json().get("tags") or [])


@contextlib.contextmanager
def running_registry(root: Path) -> Iterator[Registry]:
    with Registry(root) as registry:
        yield registry
