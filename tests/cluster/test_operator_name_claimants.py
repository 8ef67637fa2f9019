"""`Kube.list_name_claimants` on the real API server: the LocalModels that may ask for one API name,
found by field selectors (object name, and the CRD's selectable `spec.name`), and the whole scope where
the server refuses the selector (a cluster older than selectable fields, or a CRD installed before)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from lightkube import AsyncClient, KubeConfig

from localmodel_operator import kube as kube_module
from localmodel_operator.kube import Kube
from tests.support.fixtures import Cluster
from tests.support.operator_process import install_crd


def local_model(name: str, api_name: str | None) -> str:
    spec: dict[str, Any] = {"backend": "llama", "parameters": {"model": "m.gguf"}}
    spec["deployment"] = {"replicas": 0}
    if api_name is not None:
        spec["name"] = api_name
    kind = {"apiVersion": "localmodel.dev/v1alpha1", "kind": "LocalModel"}
    return json.dumps({**kind, "metadata": {"name": name}, "spec": spec})


def claimants(cluster: Cluster, namespace: str | None, name: str) -> tuple[set[str], Kube]:
    async def run() -> tuple[set[str], Kube]:
        client = AsyncClient(config=KubeConfig.from_file(cluster.kubeconfig), field_manager="claims-test")
        kube = Kube("claims-test", client)
        try:
            found = await kube.list_name_claimants(namespace, name)
            # The refused selector is remembered: a second call goes straight to the whole scope.
            again = await kube.list_name_claimants(namespace, name)
            assert {key(o) for o in again} == {key(o) for o in found}
        finally:
            await kube.close()
        return {key(o) for o in found}, kube

    return asyncio.run(run())


def key(obj: dict[str, Any]) -> str:
    return f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"


@pytest.fixture
def two_namespaces(control_plane: Cluster, namespace: str) -> Iterator[tuple[str, str]]:
    install_crd(control_plane.kubectl)
    other = f"{namespace}-b"
    control_plane.kubectl("create", "namespace", other)
    try:
        control_plane.apply(local_model("solo", None), namespace)  # asks for "solo" by its object name
        control_plane.apply(local_model("x", "solo"), other)  # asks for "solo" by spec.name
        control_plane.apply(local_model("y", "other"), other)
        control_plane.apply(local_model("solo", "renamed"), other)  # named solo, asks for "renamed"
        yield namespace, other
    finally:
        control_plane.kubectl("delete", "namespace", other, "--wait=false", check=False)


def test_both_ways_of_asking_for_a_name_are_found_and_nothing_else(
    control_plane: Cluster, two_namespaces: tuple[str, str]
) -> None:
    a, b = two_namespaces
    found, kube = claimants(control_plane, None, "solo")
    # A superset by design (b/solo is named so but asks for "renamed"); y is never read.
    assert found == {f"{a}/solo", f"{b}/x", f"{b}/solo"}
    assert kube.spec_name_selectable
    found, _ = claimants(control_plane, b, "solo")
    assert found == {f"{b}/x", f"{b}/solo"}


def test_a_refused_selector_falls_back_to_the_whole_scope(
    control_plane: Cluster, two_namespaces: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, b = two_namespaces
    # spec.backend is not a selectable field of the CRD: the real server answers 400 as an older one
    # would for spec.name.
    monkeypatch.setattr(kube_module, "SPEC_NAME_FIELD", "spec.backend")
    found, kube = claimants(control_plane, b, "solo")
    assert found == {f"{b}/x", f"{b}/y", f"{b}/solo"}
    assert not kube.spec_name_selectable
