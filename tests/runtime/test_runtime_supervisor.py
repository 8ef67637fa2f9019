"""The `serve` supervisor: a child that dies by a signal leaves its reason in the termination log.

The crashes are real: a child that raises SIGFPE on itself, one that dereferences NULL through ctypes,
and a real `localmodel-runtime serve` whose server process is killed with SIGSEGV while it serves.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from localmodel_runtime.supervisor import death_message, supervise
from tests.support.polling import poll_until
from tests.support.runtime_server import runtime_server

LOADED_THEN_SEGFAULT = (
    "from localmodel_runtime.supervisor import report_loaded; import ctypes; "
    "report_loaded(); ctypes.string_at(0)"
)


def run(code: str) -> tuple[int, list[str]]:
    lines: list[str] = []
    status = supervise([sys.executable, "-c", code], lines.append)
    return status, lines


def test_a_native_crash_before_the_model_loaded_is_a_model_load_error() -> None:
    status, lines = run("import os, signal; os.kill(os.getpid(), signal.SIGFPE)")
    assert status == 128 + signal.SIGFPE
    assert len(lines) == 1
    assert lines[0].startswith("ModelLoadError: killed by SIGFPE (")
    assert "while loading the model" in lines[0]


def test_a_native_crash_while_serving_is_named_without_blaming_the_model() -> None:
    status, lines = run(LOADED_THEN_SEGFAULT)
    assert status == 128 + signal.SIGSEGV
    assert len(lines) == 1 and lines[0].startswith("killed by SIGSEGV (") and "while serving" in lines[0]


def test_an_exit_status_passes_through_and_writes_nothing() -> None:
    assert run("import sys; sys.exit(3)") == (3, [])
    assert run("pass") == (0, [])


def test_a_stop_signal_is_passed_on_and_not_reported_as_a_crash() -> None:
    # The child asks for SIGTERM itself through the parent, as kubelet's stop reaches the parent first.
    code = "import os, signal, time; os.kill(os.getppid(), signal.SIGTERM); time.sleep(60)"
    assert run(code) == (-signal.SIGTERM, [])


def test_the_message_names_signals_by_name() -> None:
    assert death_message(signal.SIGILL, loaded=False).startswith("ModelLoadError: killed by SIGILL (")
    assert death_message(signal.SIGKILL, loaded=True).startswith("killed by SIGKILL (")


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def _gone(pid: int) -> bool:
    """Whether `pid` has exited (a zombie waiting for its reaper counts)."""
    try:
        return "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


TINY = {"name": "tiny", "backend": "llama"}


def test_serve_reports_its_server_killed_by_a_signal(tiny_gguf: Path, tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    config = {**TINY, "parameters": {"model": tiny_gguf.name}}
    env = {"LOCALMODEL_TERMINATION_LOG": str(log)}
    with runtime_server(tmp_path, config, tiny_gguf.parent, env=env) as server:
        (child,) = _children(server.process.pid)
        os.kill(child, signal.SIGSEGV)
        assert server.process.wait(timeout=60) == 128 + signal.SIGSEGV
    line = log.read_text().strip()
    assert line.startswith("killed by SIGSEGV (") and "while serving" in line
    assert "localmodel-runtime: killed by SIGSEGV" in server.log()


def test_serve_stops_cleanly_on_sigterm(tiny_gguf: Path, tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    config = {**TINY, "parameters": {"model": tiny_gguf.name}}
    env = {"LOCALMODEL_TERMINATION_LOG": str(log)}
    with runtime_server(tmp_path, config, tiny_gguf.parent, env=env) as server:
        (child,) = _children(server.process.pid)
        server.process.send_signal(signal.SIGTERM)
        # The server stops gracefully and ends by re-raising SIGTERM (uvicorn), and so does the supervisor.
        assert server.process.wait(timeout=60) == -signal.SIGTERM
        assert _gone(child)
    assert not log.exists()


def test_a_parent_killed_outright_takes_the_server_with_it(tiny_gguf: Path, tmp_path: Path) -> None:
    config = {**TINY, "parameters": {"model": tiny_gguf.name}}
    with runtime_server(tmp_path, config, tiny_gguf.parent) as server:
        (child,) = _children(server.process.pid)
        server.process.kill()
        server.process.wait(timeout=60)
        poll_until(lambda: _gone(child), f"process {child} to be killed with its parent", 60)  # PDEATHSIG
