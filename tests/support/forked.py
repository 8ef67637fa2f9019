"""Run each test in a forked child, so that a native crash (SIGSEGV, SIGFPE, SIGILL, SIGABRT in torch,
OpenVINO or GPTQModel) fails that one test, with the signal named, instead of ending the whole run.

A `pytest_runtest_protocol` hook for a conftest to re-export. The child runs the test's whole protocol
(setup, call, teardown) and sends its reports back as pytest serialises them for pytest-xdist
(`pytest_report_to_serializable`); a child that dies before that is reported as a failure naming its
signal or exit status. Fixtures wider than a test are set up again in every child: keep them cheap.
(pytest-forked does this too, but its report serialisation fails under pytest 9.)
"""

from __future__ import annotations

import json
import os
import signal

import pytest
from _pytest.runner import runtestprotocol


def _crash_report(item: pytest.Item, status: int) -> pytest.TestReport:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "unknown"
        what = f"CRASHED with signal {number} ({name})"
    else:
        what = f"EXITED with status {os.WEXITSTATUS(status)} before reporting"
    path, line, _ = item.location
    return pytest.TestReport(
        nodeid=item.nodeid,
        location=item.location,
        keywords={k: 1 for k in item.keywords},
        outcome="failed",
        longrepr=f"{path}:{(line or 0) + 1}: running the test {what}",
        when="call",
    )


def _run_in_child(item: pytest.Item) -> list[pytest.TestReport]:
    hook = item.config.hook
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run the test, send the reports, and leave without running exit handlers
        os.close(read_fd)
        code = 0
        try:
            reports = runtestprotocol(item, log=False, nextitem=None)
            data = [hook.pytest_report_to_serializable(config=item.config, report=r) for r in reports]
            with os.fdopen(write_fd, "wb") as out:
                out.write(json.dumps(data).encode())
        except BaseException:  # anything here is reported by the parent as an exit status
            code = 3
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not payload:
        return [_crash_report(item, status)]
    return [hook.pytest_report_from_serializable(config=item.config, data=d) for d in json.loads(payload)]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool:
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    for report in _run_in_child(item):
        item.ihook.pytest_runtest_logreport(report=report)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True
