"""The real `localmodel-router` as a child process on a loopback port, logging to a file.

Against the test control plane (a kubeconfig, see router_cluster.py) or in local mode (`--local-table`
among its arguments). A router started on the port of one that was stopped stands in for a restarted pod.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.net import free_port

JsonDict = dict[str, Any]


class RouterProcess:
    """`localmodel-router ARGS` on 127.0.0.1:`port` (a free one unless given)."""

    def __init__(
        self, args: list[str], log: Path, kubeconfig: Path | None = None, port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        binary = Path(sys.executable).parent / "localmodel-router"
        env = dict(os.environ)
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        env.pop("LOCALMODEL_AUTO_SETUP_CONFIG", None)
        env.pop("LOCALMODEL_GALLERIES", None)
        self._log_file = log.open("ab")
        self.proc = subprocess.Popen(
            [str(binary), "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "debug", *args],
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60.0) -> RouterProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"router exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"router not ready after {timeout:g}s:\n{self.output()}")

    def output(self) -> str:
        self._log_file.flush()
        return self.log.read_text(errors="replace")[-6000:]

    def models(self) -> dict[str, JsonDict]:
        response = httpx.get(self.url + "/v1/models", timeout=10)
        assert response.status_code == 200, response.text
        return {m["id"]: m for m in response.json()["data"]}

    def post(self, model: str, timeout: float = 120.0, **extra: Any) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
        return httpx.post(self.url + "/v1/chat/completions", json=body, timeout=timeout)

    def metric(self, line_start: str) -> float | None:
        for line in httpx.get(self.url + "/metrics", timeout=10).text.splitlines():
            if line.startswith(line_start + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log_file.close()
