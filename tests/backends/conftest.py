"""The native-library backend tests run each in a forked child (tests/support/forked.py): a SIGFPE or
SIGSEGV in torch, OpenVINO or GPTQModel then fails that one test, with the signal named, instead of
ending the run."""

from tests.support.forked import pytest_runtest_protocol  # noqa: F401
