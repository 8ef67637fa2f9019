"""A native crash in one backend test fails that test, named by its signal, and the run goes on.

Runs a real inner pytest over a module whose first test dereferences NULL (a real SIGSEGV) and whose
second passes, with the same isolation tests/backends/conftest.py gives the backend tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CRASHING = """
import ctypes


def test_crashes_natively():
    ctypes.string_at(0)


def test_runs_after_the_crash():
    assert True
"""


def test_a_segfaulting_backend_test_fails_alone_with_its_signal_named(tmp_path: Path) -> None:
    shutil.copyfile(ROOT / "tests" / "backends" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_native.py").write_text(CRASHING)
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(tmp_path)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "1 failed, 1 passed" in out, out
    assert "running the test CRASHED with signal 11 (SIGSEGV)" in out, out
    assert "FAILED test_native.py::test_crashes_natively" in out, out
