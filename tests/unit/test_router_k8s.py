"""Kubernetes discovery without an API server: LocalModel and EndpointSlice events → table."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from localmodel_router.k8s import ClusterState, KubernetesDiscovery, model_settings, slice_endpoints
from localmodel_router.table import ModelTable


def localmodel(obj_name: str, namespace: str = "ns", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "localmodel.dev/v1alpha1",
        "kind": "LocalModel",
        "metadata": {"name": obj_name, "namespace": namespace, "creationTimestamp": "2026-01-02T03:04:05Z"},
        "spec": spec,
    }


def endpointslice(
    service: str, name: str, endpoints: list[tuple[str, bool | None]], namespace: str = "ns", port: int = 8080
) -> dict[str, Any]:
    items = []
    for address, ready in endpoints:
        conditions = {} if ready is None else {"ready": ready}
        items.append({"addresses": [address], "conditions": conditions})
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "metrics", "port": 9090}, {"name": "http", "port": port}],
        "endpoints": items,
    }


def test_api_name_comes_from_spec_name_with_metadata_fallback() -> None:
    assert model_settings(localmodel("obj", name="api-name"))[0] == "api-name"
    assert model_settings(localmodel("obj"))[0] == "obj"


def test_with_the_release_key_each_model_gets_its_runtimes_token() -> None:
    from localmodel_runtime.resource.runtime_token import runtime_token

    assert model_settings(localmodel("m"))[1].upstream_token is None
    settings = model_settings(localmodel("m", namespace="team-a"), b"release-key")[1]
    assert settings.upstream_token == runtime_token(b"release-key", "team-a", "m")
    assert (
        settings.upstream_token
        != model_settings(localmodel("m", namespace="team-b"), b"release-key")[1].upstream_token
    )


def test_settings_from_spec_deployment() -> None:
    obj = localmodel(
        "m",
        deployment={
            "loadBalancing": "prefixAffinity",
            "autoscaling": {"minReplicas": 0, "scaleDownDelaySeconds": 45},
        },
    )
    _, settings = model_settings(obj)
    assert settings.strategy == "prefixAffinity"
    assert settings.min_replicas == 0 and settings.scale_down_delay == 45.0
    assert settings.namespace == "ns" and settings.resource_name == "m"
    assert (
        model_settings(localmodel("m", deployment={"loadBalancing": "bogus"}))[1].strategy == "leastInFlight"
    )


def test_slice_endpoints_use_the_http_port_and_readiness() -> None:
    obj = endpointslice("m", "m-1", [("10.0.0.1", True), ("10.0.0.2", False), ("10.0.0.3", None)])
    assert slice_endpoints(obj) == [
        ("10.0.0.1:8080", True),
        ("10.0.0.2:8080", False),
        ("10.0.0.3:8080", True),
    ]
    obj["endpoints"][0]["conditions"]["terminating"] = True
    assert slice_endpoints(obj)[0] == ("10.0.0.1:8080", False)
    v6 = endpointslice("m", "m-2", [("fd00::1", True)])
    assert slice_endpoints(v6) == [("[fd00::1]:8080", True)]


def test_events_build_and_update_the_table_in_either_order() -> None:
    table = ModelTable()
    state = ClusterState(table)
    # The slice can arrive before its LocalModel.
    state.apply_endpointslice("ADDED", endpointslice("obj", "obj-a", [("10.0.0.1", True)]))
    assert table.models == {}
    state.apply_localmodel("ADDED", localmodel("obj", name="api"))
    entry = table.models["api"]
    assert [e.address for e in entry.ready_endpoints] == ["10.0.0.1:8080"]
    assert entry.created == 1767323045
    # A second slice of the same Service adds endpoints; counters of kept ones survive.
    entry.endpoints[0].in_flight = 2
    state.apply_endpointslice("ADDED", endpointslice("obj", "obj-b", [("10.0.0.2", False)]))
    assert [(e.address, e.ready) for e in entry.endpoints] == [
        ("10.0.0.1:8080", True),
        ("10.0.0.2:8080", False),
    ]
    assert entry.endpoints[0].in_flight == 2
    state.apply_endpointslice("MODIFIED", endpointslice("obj", "obj-b", [("10.0.0.2", True)]))
    assert len(entry.ready_endpoints) == 2
    # A spec update keeps the same table entry.
    state.apply_localmodel(
        "MODIFIED", localmodel("obj", name="api", deployment={"loadBalancing": "prefixAffinity"})
    )
    assert table.models["api"] is entry and entry.settings.strategy == "prefixAffinity"
    state.apply_endpointslice("DELETED", endpointslice("obj", "obj-a", []))
    assert [e.address for e in entry.endpoints] == ["10.0.0.2:8080"]
    state.apply_localmodel("DELETED", localmodel("obj"))
    assert table.models == {}


def test_renaming_the_api_model_moves_the_entry() -> None:
    table = ModelTable()
    state = ClusterState(table)
    state.apply_localmodel("ADDED", localmodel("obj", name="old"))
    state.apply_localmodel("MODIFIED", localmodel("obj", name="new"))
    assert list(table.models) == ["new"]


def test_namespaces_are_kept_apart() -> None:
    table = ModelTable()
    state = ClusterState(table)
    state.apply_localmodel("ADDED", localmodel("a", namespace="one"))
    state.apply_endpointslice("ADDED", endpointslice("a", "a-x", [("10.0.0.9", True)], namespace="two"))
    assert table.models["a"].endpoints == []


def created_at(obj: dict[str, Any], stamp: str) -> dict[str, Any]:
    obj["metadata"]["creationTimestamp"] = stamp
    return obj


def test_the_oldest_localmodel_holds_a_name_asked_for_in_two_namespaces() -> None:
    table = ModelTable()
    state = ClusterState(table)
    older = created_at(localmodel("a", namespace="team-a", name="shared"), "2026-01-01T00:00:00Z")
    newer = created_at(localmodel("b", namespace="team-b", name="shared"), "2026-01-02T00:00:00Z")
    state.apply_localmodel("ADDED", older)
    state.apply_endpointslice("ADDED", endpointslice("a", "a-1", [("10.0.0.1", True)], namespace="team-a"))
    state.apply_localmodel("ADDED", newer)
    state.apply_endpointslice("ADDED", endpointslice("b", "b-1", [("10.0.0.2", True)], namespace="team-b"))
    # Every event of the newer model leaves the older one's endpoints in place.
    state.apply_endpointslice("MODIFIED", endpointslice("b", "b-1", [("10.0.0.3", True)], namespace="team-b"))
    state.apply_localmodel("MODIFIED", newer)
    entry = table.models["shared"]
    assert [e.address for e in entry.endpoints] == ["10.0.0.1:8080"]
    assert entry.settings.namespace == "team-a"
    # Deleting the newer one leaves the older one served, the same entry.
    state.apply_localmodel("DELETED", newer)
    assert table.models["shared"] is entry and [e.address for e in entry.endpoints] == ["10.0.0.1:8080"]
    # Deleting the older one hands the name over to the next oldest, with its own endpoints only.
    state.apply_localmodel("ADDED", newer)
    state.apply_localmodel("DELETED", older)
    handed = table.models["shared"]
    assert handed.settings.namespace == "team-b"
    assert [e.address for e in handed.endpoints] == ["10.0.0.3:8080"]


def test_an_older_claimant_seen_later_takes_the_name_and_ties_go_by_namespace() -> None:
    table = ModelTable()
    state = ClusterState(table)
    newer = created_at(localmodel("b", namespace="team-b", name="shared"), "2026-01-02T00:00:00Z")
    older = created_at(localmodel("a", namespace="team-a", name="shared"), "2026-01-01T00:00:00Z")
    state.apply_endpointslice("ADDED", endpointslice("b", "b-1", [("10.0.0.2", True)], namespace="team-b"))
    state.apply_localmodel("ADDED", newer)
    assert [e.address for e in table.models["shared"].endpoints] == ["10.0.0.2:8080"]
    # A relist that finds the older one too (in any order) leaves no trace of the newer one's pods.
    state.replace("LocalModel", None, [newer, older])
    assert table.models["shared"].settings.namespace == "team-a"
    assert table.models["shared"].endpoints == []
    # Same second: the namespace decides.
    same = created_at(localmodel("c", namespace="aaa", name="shared"), "2026-01-01T00:00:00Z")
    state.apply_localmodel("ADDED", same)
    assert table.models["shared"].settings.namespace == "aaa"
    # Renaming the holder away hands the name on.
    renamed = created_at(localmodel("c", namespace="aaa", name="own"), "2026-01-01T00:00:00Z")
    state.apply_localmodel("MODIFIED", renamed)
    assert table.models["shared"].settings.namespace == "team-a"
    assert table.models["own"].settings.namespace == "aaa"


def test_relist_forgets_what_disappeared_while_disconnected() -> None:
    table = ModelTable()
    state = ClusterState(table)
    state.apply_localmodel("ADDED", localmodel("gone"))
    state.apply_localmodel("ADDED", localmodel("kept"))
    state.apply_endpointslice("ADDED", endpointslice("kept", "kept-1", [("10.0.0.1", True)]))
    state.apply_localmodel("ADDED", localmodel("other-ns", namespace="elsewhere"))
    kept = table.models["kept"]
    state.replace("LocalModel", "ns", [localmodel("kept")])
    assert set(table.models) == {"kept", "other-ns"}
    assert table.models["kept"] is kept
    state.replace("EndpointSlice", "ns", [endpointslice("kept", "kept-2", [("10.0.0.5", True)])])
    assert [e.address for e in kept.endpoints] == ["10.0.0.5:8080"]
    state.replace("EndpointSlice", "ns", [])
    assert kept.endpoints == [] and kept.ready_endpoints == []


class FakeListing:
    def __init__(self, objects: list[dict[str, Any]], version: str) -> None:
        self.objects = objects
        self.resourceVersion = version

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        for obj in self.objects:
            yield obj


class FakeClient:
    """Stands in for lightkube's AsyncClient: one listing per kind, then scripted watch events."""

    def __init__(self) -> None:
        self.lists: dict[str, list[dict[str, Any]]] = {"LocalModel": [], "EndpointSlice": []}
        self.events: dict[str, asyncio.Queue[tuple[str, dict[str, Any]]]] = {
            "LocalModel": asyncio.Queue(),
            "EndpointSlice": asyncio.Queue(),
        }
        self.watched: list[tuple[str, str | None, str | None]] = []
        self.patches: list[tuple[str, str, dict[str, Any], str | None, Any]] = []

    @staticmethod
    def _kind(res: Any) -> str:
        return "EndpointSlice" if res.__name__ == "EndpointSlice" else "LocalModel"

    def list(self, res: Any, *, namespace: str | None = None) -> FakeListing:
        return FakeListing(self.lists[self._kind(res)], "7")

    async def watch(
        self, res: Any, *, namespace: str | None = None, resource_version: str | None = None
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        kind = self._kind(res)
        self.watched.append((kind, namespace, resource_version))
        while True:
            yield await self.events[kind].get()

    async def patch(
        self,
        res: Any,
        name: str,
        obj: dict[str, Any],
        *,
        namespace: str | None = None,
        patch_type: Any = None,
    ) -> None:
        self.patches.append((repr(res), name, obj, namespace, patch_type))


async def test_discovery_lists_then_watches_and_the_scaler_patches_scale() -> None:
    fake = FakeClient()
    fake.lists["LocalModel"] = [localmodel("obj", name="api", deployment={"autoscaling": {"minReplicas": 0}})]
    fake.lists["EndpointSlice"] = [endpointslice("obj", "obj-1", [("10.0.0.1", True)])]
    discovery = KubernetesDiscovery(["ns"], client=fake)
    table = ModelTable()
    await discovery.start(table)
    for _ in range(50):
        if table.synced and len(fake.watched) == 2:
            break
        await asyncio.sleep(0.01)
    assert table.synced
    assert sorted(fake.watched) == [("EndpointSlice", "ns", "7"), ("LocalModel", "ns", "7")]
    assert [e.address for e in table.models["api"].ready_endpoints] == ["10.0.0.1:8080"]
    await fake.events["EndpointSlice"].put(("MODIFIED", endpointslice("obj", "obj-1", [("10.0.0.1", False)])))
    for _ in range(50):
        if not table.models["api"].ready_endpoints:
            break
        await asyncio.sleep(0.01)
    assert table.models["api"].ready_endpoints == []
    assert discovery.scaler is not None
    await discovery.scaler.scale_up(table.models["api"])
    await discovery.scaler.scale_down(table.models["api"])
    from lightkube.types import PatchType

    assert [(p[1], p[2], p[3], p[4]) for p in fake.patches] == [
        ("obj", {"spec": {"replicas": 1}}, "ns", PatchType.MERGE),
        ("obj", {"spec": {"replicas": 0}}, "ns", PatchType.MERGE),
    ]
    assert "Scale" in fake.patches[0][0]
    await discovery.stop()
