"""No leaks: 500 LocalModels created, used through the router (woken from zero, balanced with prefix
affinity, autoscaled, their use published) and deleted through the Kubernetes discovery's table updates
(`ClusterState`, what the watches feed), half of them losing their pod first. Afterwards every per-model
and per-endpoint structure of the router is back to its size, and `/metrics` names none of them.

Each model has two endpoints at their own loopback addresses (127.x.y.z all reach the one real runtime),
so the connection pool's idle map is keyed by distinct endpoints as it is by pod IPs in a cluster.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from localmodel_router.app import RouterApp
from localmodel_router.discovery import Discovery
from localmodel_router.k8s import SERVICE_LABEL, ClusterState
from localmodel_router.settings import RouterSettings
from localmodel_router.table import ModelEntry, ModelTable
from tests.support.polling import poll_until
from tests.support.router_fixtures import RecordingScaler, ThreadServer
from tests.support.runtime_server import RuntimeServer, runtime_server

MODELS = 500
BATCH = 50
NAMESPACE = "leaks"


class MemoryClock:
    """The shared idle clock, in memory (the Lease-backed one needs an API server)."""

    def __init__(self) -> None:
        self.uses: dict[str, float] = {}
        self.lock = threading.Lock()

    async def publish(self, model: ModelEntry, used_at: float) -> None:
        with self.lock:
            self.uses[model.name] = used_at

    async def last_use(self, model: ModelEntry) -> float | None:
        return self.uses.get(model.name)

    async def share_load(self, model: ModelEntry, load: float) -> float:
        return load

    def forget(self, model: ModelEntry) -> None:
        with self.lock:
            self.uses.pop(model.name, None)


class Watches(Discovery):
    """Discovery whose events the test feeds into `ClusterState` (on the router's loop)."""

    def __init__(self) -> None:
        self.scaler = RecordingScaler()
        self.clock = MemoryClock()
        self.state: ClusterState | None = None

    async def start(self, table: ModelTable) -> None:
        self.state = ClusterState(table)
        table.synced = True

    async def stop(self) -> None:
        return None


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[RuntimeServer]:
    config = {
        "name": "tiny",
        "backend": "llama",
        "context_size": 256,
        "options": ["parallel:4"],
        "parameters": {"model": "tiny.gguf"},
    }
    # Every loopback address reaches it: the endpoints of different models differ as pod IPs do.
    args = ["--host", "0.0.0.0", "--max-waiting", "1000"]
    with runtime_server(tmp_path_factory.mktemp("leaks"), config, tiny_gguf.parent, args=args) as server:
        yield server


def localmodel(index: int) -> dict[str, Any]:
    name = f"leak-{index}"
    return {
        "metadata": {"namespace": NAMESPACE, "name": name, "uid": f"uid-{index}"},
        "spec": {
            "name": name,
            "deployment": {
                "loadBalancing": "prefixAffinity",
                "autoscaling": {"minReplicas": 0, "maxReplicas": 2, "scaleDownDelaySeconds": 600},
            },
        },
    }


def endpointslice(index: int, port: int) -> dict[str, Any]:
    hosts = [f"127.{n}.{index // 250}.{index % 250 + 1}" for n in (1, 2)]
    return {
        "metadata": {
            "namespace": NAMESPACE,
            "name": f"leak-{index}-abcde",
            "labels": {SERVICE_LABEL: f"leak-{index}"},
        },
        "ports": [{"name": "http", "port": port}],
        "endpoints": [{"addresses": [host], "conditions": {"ready": True}} for host in hosts],
    }


def sizes(app: RouterApp, watches: Watches) -> dict[str, int]:
    scale = app.scale
    autoscaler = scale.autoscaler
    assert autoscaler is not None and watches.state is not None
    series = sum(
        len(family.samples)
        for family in app.metrics.registry.collect()
        if family.name.startswith("localmodel_router_")
    )
    return {
        "table.models": len(app.table.models),
        "table.waiters": len(app.table._waiters),
        "metrics.models": len(app.metrics._models),
        "metrics.series": series,
        "affinity rings": len(app.forwarder._affinity),
        "pool idle map": len(app.pool._idle),
        "scale.unpublished": len(scale._unpublished),
        "scale.published_at": len(scale._published_at),
        "scale.waking": len(scale._waking),
        "scale.scaled_down": len(scale._scaled_down),
        "autoscale.samples": len(autoscaler._samples),
        "autoscale.low_since": len(autoscaler._low_since),
        "clock.uses": len(watches.clock.uses),
        "cluster.models": len(watches.state.models),
        "cluster.slices": len(watches.state.slices),
    }


def test_500_models_created_used_and_deleted_leave_no_router_state(runtime: RuntimeServer) -> None:
    watches = Watches()
    # The background loop decides once at start and then not for an hour: the test's rounds decide,
    # at a fixed time, so whether a scale-down delay has run out never depends on the machine's clock.
    settings = RouterSettings(cold_start_timeout=60, autoscale_interval=3600)
    app = RouterApp(ModelTable(), watches, settings)
    router = ThreadServer(app).start()
    port = int(runtime.base_url.rsplit(":", 1)[1])
    http = httpx.Client(timeout=120)

    def feed(event: str, obj: dict[str, Any]) -> None:
        state = watches.state
        assert state is not None
        if "spec" in obj:
            router.call(lambda: state.apply_localmodel(event, obj))
        else:
            router.call(lambda: state.apply_endpointslice(event, obj))

    def use(index: int) -> int:
        """One completion for model `index`, named by the bearer token (the body names none)."""
        answer = http.post(
            router.url + "/v1/completions",
            json={"prompt": f"request for model {index}", "max_tokens": 1},
            headers={"authorization": f"Bearer leak-{index}"},
        )
        return answer.status_code

    async def one_round() -> None:
        app.scale.publish_uses()
        autoscaler = app.scale.autoscaler
        assert autoscaler is not None
        autoscaler.sample(0.0)
        await autoscaler.decide(0.0)

    def tick() -> None:
        """Publish the uses and run one autoscaling round to its end (on the router's loop)."""
        assert router.loop is not None
        asyncio.run_coroutine_threadsafe(one_round(), router.loop).result(30)

    def lifecycle(indices: range, pool: ThreadPoolExecutor) -> dict[str, int]:
        for index in indices:
            feed("ADDED", localmodel(index))
        # Each model starts at zero: its first request wakes it and waits for an endpoint.
        answers = [pool.submit(use, index) for index in indices]
        woken = {("up", f"leak-{index}") for index in indices}
        poll_until(lambda: woken <= set(watches.scaler.calls), "every model to be woken")
        for index in indices:
            feed("ADDED", endpointslice(index, port))
        assert [a.result(120) for a in answers] == [200] * len(indices)
        tick()
        peak = sizes(app, watches)
        for index in indices:
            if index % 2 == 0:  # the pod goes first: its connections go with it
                feed("DELETED", endpointslice(index, port))
                feed("DELETED", localmodel(index))
            else:  # the model is deleted; its Service's slice follows (garbage collection)
                feed("DELETED", localmodel(index))
                feed("DELETED", endpointslice(index, port))
        return peak

    try:
        with ThreadPoolExecutor(BATCH) as pool:
            # A model that stays: the structures' baseline includes one model in use.
            feed("ADDED", localmodel(MODELS))
            feed("ADDED", endpointslice(MODELS, port))
            assert use(MODELS) == 200
            tick()
            before = sizes(app, watches)
            peaks = [lifecycle(range(start, start + BATCH), pool) for start in range(0, MODELS, BATCH)]
            after = sizes(app, watches)
            idle_keys = router.call(lambda: list(app.pool._idle))
        scraped = http.get(router.url + "/metrics").text
    finally:
        http.close()
        router.stop()
    # The structures did grow with the models (the test measures something) ...
    for key in ("metrics.models", "affinity rings", "scale.published_at", "autoscale.samples"):
        assert all(peak[key] >= before[key] + BATCH for peak in peaks), (key, peaks[0], before)
    assert all(peak["pool idle map"] > before["pool idle map"] for peak in peaks)
    assert len(watches.scaler.calls) >= MODELS
    # ... and are back to their size once the models are gone. The kept model's idle connection may have
    # been closed by the runtime meanwhile, and its use published: those two may only have shrunk.
    volatile = ("pool idle map", "scale.unpublished")
    assert {k: v for k, v in after.items() if k not in volatile} == {
        k: v for k, v in before.items() if k not in volatile
    }
    assert all(after[key] <= before[key] for key in volatile), (after, before)
    assert all(host.endswith(f".{MODELS // 250}.{MODELS % 250 + 1}") for host, _ in idle_keys)
    assert "leak-" + str(MODELS) in scraped
    assert not [
        line for line in scraped.splitlines() if 'model="leak-' in line and f"leak-{MODELS}" not in line
    ]
