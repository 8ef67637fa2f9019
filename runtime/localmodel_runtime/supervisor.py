"""`localmodel-runtime serve` runs the server in a child process and stays as its parent, so that a death
by signal still leaves a reason behind.

A backend library that crashes natively (SIGSEGV, SIGFPE, SIGILL, SIGBUS, SIGABRT) takes its whole
process with it: nothing in that process can write the termination log afterwards. The parent sees the
signal and writes it, e.g. `ModelLoadError: killed by SIGFPE (Floating-point exception) while loading the
model`, which the operator turns into a `Degraded` condition. The parent imports nothing heavy, forwards
the stop signals, and passes the child's exit status on (128 + the signal's number for a signal, as a
shell does).

The child tells the parent that the model has loaded by writing to an inherited pipe (its descriptor in
`SUPERVISOR_FD_ENV`); a child that dies before that died loading the model.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import NoReturn

SUPERVISOR_FD_ENV = "LOCALMODEL_SUPERVISOR_FD"
LOADED = b"loaded\n"
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def supervised() -> bool:
    """Whether this process is the supervised child."""
    return SUPERVISOR_FD_ENV in os.environ


def report_loaded() -> None:
    """Tell the supervising parent (if any) that the model has loaded; later deaths happen while serving."""
    fd = os.environ.get(SUPERVISOR_FD_ENV)
    if fd is None:
        return
    try:
        os.write(int(fd), LOADED)
        os.close(int(fd))
    except (OSError, ValueError):
        pass  # the parent is gone or the variable was not ours: nothing to tell


def death_message(signum: int, loaded: bool) -> str:
    """The termination-log line for a child killed by `signum`.

    Before the model loaded it is a `ModelLoadError` (the operator's reason); once serving, a crash is
    no fault of the model config, so the line carries no reason and the pod's restart count tells.
    """
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    description = signal.strsignal(signum) or name
    if loaded:
        return f"killed by {name} ({description}) while serving; the pod log has the native stack"
    return (
        f"ModelLoadError: killed by {name} ({description}) while loading the model; "
        "the pod log has the native stack"
    )


def _die_with_parent() -> None:
    """In the child, before exec: die with the parent. It forwards every stop signal, so it only dies
    without doing so when it is SIGKILLed, and then the child must not outlive it."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)


def supervise(command: Sequence[str], write_termination_log: Callable[[str], None]) -> int:
    """Run `command` as the supervised child; how this process should end: an exit status, or -N to die
    by signal N as the child did after a stop signal it was passed (uvicorn re-raises SIGTERM once it
    has shut down gracefully), so that whoever started us sees what they would without a supervisor."""
    read_fd, write_fd = os.pipe()
    env = {**os.environ, SUPERVISOR_FD_ENV: str(write_fd)}
    try:
        # A process group of its own: a Ctrl-C (or a kill of this group) reaches the child once, through
        # `forward`, not twice (a second SIGINT makes uvicorn skip its graceful shutdown).
        child = subprocess.Popen(
            list(command), env=env, pass_fds=(write_fd,), preexec_fn=_die_with_parent, process_group=0
        )
    finally:
        os.close(write_fd)
    loaded = threading.Event()

    def watch_pipe() -> None:
        with os.fdopen(read_fd, "rb") as pipe:
            if pipe.read(len(LOADED)) == LOADED:
                loaded.set()

    watcher = threading.Thread(target=watch_pipe, name="supervisor-pipe", daemon=True)
    watcher.start()
    forwarded: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        forwarded.append(signum)
        if child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    watcher.join(timeout=5)  # the pipe closes with the child, so this returns at once
    if code >= 0:
        return code
    signum = -code
    if signum in forwarded:  # a stop we were asked to pass on is not a crash
        return code
    line = death_message(signum, loaded.is_set())
    print(f"localmodel-runtime: {line}", file=sys.stderr, flush=True)
    write_termination_log(line)
    return 128 + signum


def exit_like(status: int) -> NoReturn:
    """End this process with `status` from :func:`supervise`."""
    if status < 0:
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
        status = 128 - status  # only if the signal did not end us
    sys.exit(status)
