"""Checks that hold for every backend, written once for the tests of each."""

from __future__ import annotations

import pytest

from localmodel_runtime.backends.base import Backend, UnsupportedOperation


async def assert_refuses_to_rerank(backend: Backend, query: str, documents: list[str]) -> None:
    """A backend loaded without `reranking: true` says so in its capabilities, and `rerank` fails
    naming the key; the backend is closed afterwards."""
    await backend.load()
    try:
        assert not backend.capabilities().rerank
        with pytest.raises(UnsupportedOperation, match="reranking: true"):
            await backend.rerank(query, documents)
    finally:
        await backend.close()
