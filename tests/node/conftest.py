"""Fixtures of the real-node tier (tests/support/node_fixtures.py): the registry with the product's
images, and a control plane with a real kubelet, containerd and kube-proxy per test module."""

from tests.support.fixtures_models import gemma_gguf  # noqa: F401
from tests.support.node_fixtures import node_images, node_registry, real_cluster  # noqa: F401
