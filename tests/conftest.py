"""Fixtures shared by every test directory: model files and the real control plane.

Fixtures live in tests/support/ (importable helpers, no test collection there); this file only
registers them so that unit, runtime, cluster and e2e tests all see the same session fixtures.
"""

import gc
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from tests.support.fixtures import control_plane, namespace  # noqa: F401
from tests.support.fixtures_models import gemma_gguf, tiny_gguf  # noqa: F401


@pytest.fixture(autouse=True)
def collect_garbage() -> Iterator[None]:
    """Collect reference cycles after every test, so that a socket or file a test leaves to the
    garbage collector warns (ResourceWarning, an error here) in that test's teardown rather than in
    whichever later test the collector happens to run in."""
    yield
    gc.collect()


@pytest.fixture
def openai_clients() -> Iterator[Callable[..., openai.OpenAI]]:
    """Makes `openai` clients (no retries, so a test sees the status the server answered) that are
    closed when the test ends: `openai_clients(base_url, timeout=120)` (`api_key=` to present one)."""
    made: list[openai.OpenAI] = []

    def make(base_url: str, **options: Any) -> openai.OpenAI:
        client = openai.OpenAI(**{"base_url": base_url, "api_key": "unused", "max_retries": 0, **options})
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
