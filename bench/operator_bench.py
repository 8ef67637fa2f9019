"""Operator benchmark on a real control plane (etcd, kube-apiserver, controller manager, scheduler).

The real `localmodel-operator` runs as a subprocess under the chart's RBAC, exactly as the cluster tests
start it (tests/support/operator_process.py). Measured:

- apply → Deployment: LocalModels created one at a time (each waits for its Deployment), the time from
  the create call returning to the Deployment's ADDED event on a watch; p50 / p99 / max.
- 200 LocalModels at once: from the first create to every Deployment existing, and to every status
  reporting its observedGeneration.
- the operator's peak resident memory (VmHWM) and its CPU time.

LocalModels use `replicas: 0`: this measures the operator, not pods. No process node runs.

    .cache/venv/bin/python bench/operator_bench.py [--applies 50] [--bulk 200]

Writes bench/results/operator.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lightkube import Client, KubeConfig, codecs
from lightkube.resources.apps_v1 import Deployment

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from localmodel_operator.kube import LocalModelResource  # noqa: E402
from tests.support.controlplane import ControlPlane  # noqa: E402
from tests.support.operator_process import OperatorProcess, peak_rss_kib, running_operator  # noqa: E402


def manifest(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "localmodel.dev/v1alpha1",
        "kind": "LocalModel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "backend": "llama",
            "parameters": {"model": "model.gguf"},
            "context_size": 2048,
            "deployment": {"replicas": 0},
        },
    }


class DeploymentWatch:
    """Records the monotonic time each Deployment of a namespace was first seen on a watch."""

    def __init__(self, client: Client, namespace: str) -> None:
        self.seen: dict[str, float] = {}
        self.cond = threading.Condition()
        self._client, self._namespace = client, namespace
        self.ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait(10)

    def _run(self) -> None:
        with contextlib.suppress(Exception):  # the control plane goes away at the end
            self.ready.set()
            for _, obj in self._client.watch(Deployment, namespace=self._namespace):
                name = obj.metadata.name if obj.metadata else None
                if name:
                    with self.cond:
                        self.seen.setdefault(name, time.monotonic())
                        self.cond.notify_all()

    def wait_for(self, names: set[str], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: names <= self.seen.keys(), timeout)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def create_namespace(client: Client, name: str) -> None:
    client.create(codecs.from_dict({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))


def apply_latency(client: Client, count: int) -> dict[str, Any]:
    ns = "bench-latency"
    create_namespace(client, ns)
    watch = DeploymentWatch(client, ns)
    time.sleep(0.5)  # the watch is established before the first create
    latencies = []
    for i in range(count):
        name = f"lat-{i}"
        client.create(codecs.from_dict(manifest(name, ns)))
        sent = time.monotonic()
        if not watch.wait_for({name}, 60):
            raise RuntimeError(f"no Deployment for {name} within 60 s")
        latencies.append((watch.seen[name] - sent) * 1000)
    return {
        "count": count,
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1),
        "mean_ms": round(statistics.fmean(latencies), 1),
    }


def bulk_reconcile(client: Client, count: int) -> dict[str, Any]:
    ns = "bench-bulk"
    create_namespace(client, ns)
    watch = DeploymentWatch(client, ns)
    time.sleep(0.5)
    names = {f"bulk-{i}" for i in range(count)}
    start = time.monotonic()
    for name in sorted(names):
        client.create(codecs.from_dict(manifest(name, ns)))
    created = time.monotonic()
    if not watch.wait_for(names, 600):
        raise RuntimeError(f"only {len(watch.seen)} of {count} Deployments within 600 s")
    deployments_done = max(watch.seen.values())
    while True:
        listed = client.list(LocalModelResource, namespace=ns)
        items = [lm.to_dict() for lm in listed]  # type: ignore[no-untyped-call]
        observed = sum(
            1
            for lm in items
            if (lm.get("status") or {}).get("observedGeneration") == lm["metadata"]["generation"]
        )
        if observed == count:
            break
        if time.monotonic() - start > 600:
            raise RuntimeError(f"only {observed} of {count} statuses observed within 600 s")
        time.sleep(0.2)
    statuses_done = time.monotonic()
    return {
        "count": count,
        "create_calls_s": round(created - start, 2),
        "all_deployments_s": round(deployments_done - start, 2),
        "all_status_observed_s": round(statuses_done - start, 2),
        "per_model_ms": round((statuses_done - start) / count * 1000, 1),
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def machine() -> dict[str, Any]:
    """The CPUs and the load average a run starts on, for the results file."""
    return {"cpus": os.cpu_count(), "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}


def write_results(out: Path, results: dict[str, Any]) -> None:
    """The results as indented JSON in `out` (its folder made where missing)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


@contextlib.contextmanager
def operator(cp: ControlPlane, workdir: Path) -> Iterator[OperatorProcess]:
    yield from running_operator(cp.kubectl, cp.server, cp.pki_dir / "ca.crt", workdir)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--applies", type=int, default=50)
    parser.add_argument("--bulk", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "operator.json")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine()}
    with ControlPlane() as cp, tempfile.TemporaryDirectory() as tmp, operator(cp, Path(tmp)) as op:
        client = Client(KubeConfig.from_file(cp.kubeconfig), field_manager="operator-bench")
        assert op.pid is not None
        results["operator_rss_at_start_mib"] = round(peak_rss_kib(op.pid) / 1024, 1)
        results["apply_to_deployment"] = apply_latency(client, args.applies)
        cpu_before = cpu_seconds(op.pid)
        results["reconcile_bulk"] = bulk_reconcile(client, args.bulk)
        results["reconcile_bulk"]["operator_cpu_s"] = round(cpu_seconds(op.pid) - cpu_before, 2)
        results["operator_peak_rss_mib"] = round(peak_rss_kib(op.pid) / 1024, 1)
        client.close()
    lat, bulk = results["apply_to_deployment"], results["reconcile_bulk"]
    rows = [
        ("apply → Deployment p50", f"{lat['p50_ms']} ms"),
        ("apply → Deployment p99", f"{lat['p99_ms']} ms"),
        ("apply → Deployment max", f"{lat['max_ms']} ms"),
        (f"{bulk['count']} LocalModels: all Deployments", f"{bulk['all_deployments_s']} s"),
        (f"{bulk['count']} LocalModels: all statuses observed", f"{bulk['all_status_observed_s']} s"),
        (f"{bulk['count']} LocalModels: operator CPU", f"{bulk['operator_cpu_s']} s"),
        ("operator RSS at start", f"{results['operator_rss_at_start_mib']} MiB"),
        ("operator peak RSS", f"{results['operator_peak_rss_mib']} MiB"),
    ]
    width = max(len(r[0]) for r in rows)
    print(
        f"operator benchmark ({lat['count']} sequential applies, {bulk['count']} at once, "
        f"{results['machine']['cpus']} CPUs)"
    )
    for label, value in rows:
        print(f"  {label:<{width}}  {value:>10}")
    write_results(args.out, results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
