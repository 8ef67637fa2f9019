"""Fixtures shared by every test directory: model files and the real control plane.

Fixtures live in tests/support/ (importable helpers, no test collection there); this file only
registers them so that unit, runtime, cluster and e2e tests all see the same session fixtures.
"""

from tests.support.fixtures import control_plane, namespace  # noqa: F401
from tests.support.fixtures_models import gemma_gguf, tiny_gguf  # noqa: F401
