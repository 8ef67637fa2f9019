"""A real `localmodel-runtime serve` process for tests (like vLLM's RemoteOpenAIServer).

`runtime_server(tmp_path, config, models_dir)` writes the model YAML, starts the venv's
`localmodel-runtime serve` on a free port, waits (bounded) until `/readyz` answers 200 and yields a
`RuntimeServer` with the base URL and `openai` clients. A process that exits or never gets ready fails
the test with its log. The process is terminated (SIGTERM, then SIGKILL) when the block ends.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.support.net import free_port
from tests.support.processes import logged_process, wait_answering

RUNTIME = Path(sys.executable).parent / "localmodel-runtime"


def write_config(directory: Path, config: Mapping[str, Any] | Sequence[Mapping[str, Any]] | str) -> Path:
    path = directory / "model.yaml"
    text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class RuntimeServer:
    base_url: str
    """`http://127.0.0.1:PORT` (the OpenAI API is under /v1)."""
    process: subprocess.Popen[bytes]
    log_path: Path
    clients: list[openai.OpenAI] = field(default_factory=list)
    """The clients `client()` made, closed with the server."""

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/v1"

    def client(self, **kwargs: Any) -> openai.OpenAI:
        # No retries: a test must see the status the server answered, not a retried one.
        made = openai.OpenAI(base_url=self.api_url, api_key="test", max_retries=0, **kwargs)
        self.clients.append(made)
        return made

    def async_client(self, **kwargs: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.api_url, api_key="test", max_retries=0, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def metric(self, series: str) -> float:
        """The value of one series of `/metrics` (`name` or `name{labels}` as exported); 0 if absent."""
        for line in httpx.get(f"{self.base_url}/metrics", timeout=10).text.splitlines():
            if line.startswith(series + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


def run_cli(
    *args: str | Path, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `localmodel-runtime ARGS` to completion (bounded), capturing its output."""
    return subprocess.run(
        [str(RUNTIME), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


@contextlib.contextmanager
def runtime_server(
    directory: Path,
    config: Mapping[str, Any] | Sequence[Mapping[str, Any]] | str,
    models_dir: Path,
    *,
    args: Sequence[str] = (),
    ready_timeout: float = 180,
    env: Mapping[str, str] | None = None,
) -> Iterator[RuntimeServer]:
    config_path = write_config(directory, config)
    port = free_port()
    log_path = directory / f"runtime-{port}.log"
    command = [
        str(RUNTIME),
        "serve",
        "--config",
        str(config_path),
        "--models-dir",
        str(models_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *args,
    ]
    with logged_process(command, log_path, grace=30, env={**os.environ, **(env or {})}) as process:
        server = RuntimeServer(f"http://127.0.0.1:{port}", process, log_path)
        problem = wait_answering(process, f"{server.base_url}/readyz", ready_timeout)
        if problem is not None:
            pytest.fail(f"localmodel-runtime was not ready ({problem}):\n{server.log()}")
        try:
            yield server
        finally:
            for client in server.clients:
                client.close()


@contextlib.contextmanager
def runtime_servers(
    tmp_path_factory: pytest.TempPathFactory,
    count: int,
    config: Mapping[str, Any],
    models_dir: Path,
    *,
    args: Sequence[str] = (),
) -> Iterator[list[RuntimeServer]]:
    """`count` replicas of one model, each a `runtime_server` in a directory of its own: started in
    turn, stopped in reverse."""
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(
                runtime_server(tmp_path_factory.mktemp(f"replica{i}"), config, models_dir, args=args)
            )
            for i in range(count)
        ]
