"""Child processes of tests and benches: started with their output in a log file, stopped with SIGTERM
and then SIGKILL, waited for (bounded) until they answer, and the end of their log for a failure."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx


def log_tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a log file; `(no log)` where there is none."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def process_alive(pid: int) -> bool:
    """Whether a process of that id exists (a zombie counts until it is reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal a process group that may be gone already."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def stop_process(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def logged_process(
    argv: Sequence[str], log: Path, grace: float = 10.0, **popen: Any
) -> Iterator[subprocess.Popen[bytes]]:
    """`argv` running with its output in `log` (overwritten) while the block runs; stopped afterwards."""
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, **popen)
    try:
        yield process
    finally:
        stop_process(process, grace)


def wait_answering(process: subprocess.Popen[bytes], url: str, bound: float) -> str | None:
    """Poll `url` until it answers 200 (None), or until `process` exits or `bound` seconds pass: then
    what went wrong, in words (`exited with 1`)."""
    deadline = time.monotonic() + bound
    with httpx.Client(timeout=2.0) as client:
        while True:
            code = process.poll()
            if code is not None:
                return f"exited with {code}"
            with contextlib.suppress(httpx.TransportError):
                if client.get(url).status_code == 200:
                    return None
            if time.monotonic() > deadline:
                return f"did not answer on {url} within {bound}s"
            time.sleep(0.05)


@dataclass
class Component:
    """One long-running program of a test cluster (etcd, the kubelet, ...) and its log."""

    name: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def spawn(self, cwd: Path, env: Mapping[str, str] | None = None) -> None:
        """Start it in a session of its own (so that `stop` signals its whole process group), its
        output appended to its log."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=cwd,
                env=env,
            )

    def stop(self, grace: float) -> None:
        """SIGTERM to its process group, SIGKILL after `grace` seconds."""
        if self.proc is None:
            return
        signal_group(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            signal_group(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=grace)


def wait_while_running(
    components: Sequence[Component],
    ready: Callable[[], bool],
    what: str,
    deadline: float,
    error: type[Exception],
    interval: float = 0.5,
) -> bool:
    """Poll `ready` until it holds (True) or `deadline` passes (False); an error of its request counts
    as not yet. A component that exits meanwhile raises `error` with the end of its log."""
    while time.monotonic() < deadline:
        for comp in components:
            if comp.proc is not None and comp.proc.poll() is not None:
                raise error(
                    f"{comp.name} exited with {comp.proc.returncode} while waiting for {what}; "
                    f"last lines of {comp.log}:\n{log_tail(comp.log)}"
                )
        with contextlib.suppress(httpx.HTTPError, OSError, subprocess.SubprocessError, ValueError):
            if ready():
                return True
        time.sleep(interval)
    return False


class StartStop:
    """Something with `start()` and `stop()`, used as `with Thing(...) as thing:`: started on entry,
    stopped when the block ends, however it ends."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
