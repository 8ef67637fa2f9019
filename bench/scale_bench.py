"""Scale curves on a real control plane: the operator and the router with 10 … 2,000 LocalModels.

Operator: for each size N a fresh control plane and a fresh `localmodel-operator -A` (the real
subprocess under the chart's RBAC, as bench/operator_bench.py starts it), then N LocalModels
(`replicas: 0`, so no pods) created at once by a few client threads. Measured: first create → every
status reports its observedGeneration (polled), the operator's peak RSS (VmHWM) and CPU time.
Fresh per size so each figure belongs to that size alone (`-n NS` would need the right to list
namespaces, which kopf asks for and the chart's rules do not grant).

Router (cluster path): one `localmodel-router --namespace scale-router` lists and watches LocalModels
and EndpointSlices on the API server while the namespace grows to each size; every LocalModel has
three ready endpoints: three fake upstreams (bench/fake_upstream.py) on the host's first non-loopback
address (the API server rejects loopback endpoints), one port and so one EndpointSlice each.
Per size: last create → the router lists all N models, its RSS, and the latency of sequential
keep-alive requests through it vs direct to an upstream (p50/p99, interleaved blocks; "added" is the
difference, so the client's own overhead cancels).

    .cache/venv/bin/python bench/scale_bench.py [--sizes 10,100,1000,2000] [--skip-router]

Writes bench/results/scale.json and, where .cache/venv-aiperf has matplotlib, scale.png.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lightkube import Client, KubeConfig, codecs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.operator_bench import (  # noqa: E402
    cpu_seconds,
    create_namespace,
    manifest,
    percentile,
    write_results,
)
from localmodel_operator.kube import LocalModelResource  # noqa: E402
from tests.support.controlplane import ControlPlane  # noqa: E402
from tests.support.net import free_port  # noqa: E402
from tests.support.operator_process import (  # noqa: E402
    OperatorProcess,
    grant_operator_rbac,
    install_crd,
    peak_rss_kib,
)
from tests.support.polling import poll_until  # noqa: E402
from tests.support.processes import logged_process  # noqa: E402

ENDPOINTS = 3
ROUTER_NS = "scale-router"
BODY = b'{"model":"%s","messages":[{"role":"user","content":"Say hello to the benchmark, please."}]}'
CREATE_THREADS = 4  # a few concurrent clients, as `kubectl apply -f dir/` plus a controller would be


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def rss_kib(pid: int, field: str = "VmRSS:") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def create_all(client: Client, objects: list[dict[str, Any]]) -> None:
    with ThreadPoolExecutor(CREATE_THREADS) as pool:
        for _ in pool.map(lambda o: client.create(codecs.from_dict(o)), objects):
            pass


def observed(client: Client, namespace: str) -> int:
    """How many of the namespace's LocalModels have a status for their current generation."""
    count = 0
    for lm in client.list(LocalModelResource, namespace=namespace, chunk_size=500):
        item = lm.to_dict()  # type: ignore[no-untyped-call]
        if (item.get("status") or {}).get("observedGeneration") == item["metadata"].get("generation"):
            count += 1
    return count


def wait_observed(client: Client, namespace: str, size: int, timeout: float) -> float:
    """Polls (a watch thread proved fragile under load: one that dies silently hangs the bench); the
    interval grows with the size so the listing itself stays a small part of the API server's work."""
    interval = min(2.0, 0.2 + size / 2000)
    deadline = time.monotonic() + timeout
    while True:
        stamp = time.monotonic()
        if observed(client, namespace) >= size:
            return stamp
        if stamp > deadline:
            raise RuntimeError(f"not every status observed within {timeout:g} s")
        time.sleep(interval)


def operator_size(size: int, tmp: Path) -> dict[str, Any]:
    ns = f"scale-{size}"
    with ControlPlane() as cp:
        install_crd(cp.kubectl)
        kubeconfig = grant_operator_rbac(
            cp.kubectl, cp.server, cp.pki_dir / "ca.crt", tmp / f"{ns}.kubeconfig"
        )
        client = Client(KubeConfig.from_file(cp.kubeconfig), field_manager="scale-bench")
        create_namespace(client, ns)
        try:
            before = api_requests(cp)
            result = operator_run(client, kubeconfig, ns, size, tmp)
            result["api_requests_per_model"] = per_model(api_requests(cp), before, size)
            return result
        finally:
            client.close()


REQUEST_TOTAL = re.compile(r"^apiserver_request_total\{([^}]*)\} ([0-9.e+]+)$")
LABEL = re.compile(r'(\w+)="([^"]*)"')


def api_requests(cp: ControlPlane) -> dict[str, float]:
    """The API server's request counts by "VERB resource[/subresource]" (every client: the operator,
    the controllers reacting to its children, this bench's creates and polls)."""
    counts: dict[str, float] = {}
    for line in cp.kubectl("get", "--raw", "/metrics", timeout=120).stdout.splitlines():
        found = REQUEST_TOTAL.match(line)
        if not found:
            continue
        labels = dict(LABEL.findall(found.group(1)))
        what = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
        key = f"{labels.get('verb', '?')} {what}"
        counts[key] = counts.get(key, 0.0) + float(found.group(2))
    return counts


def per_model(after: dict[str, float], before: dict[str, float], size: int) -> dict[str, float]:
    """Requests per LocalModel during the run, by kind of request (those of at least 0.1 a model)."""
    rows = {k: (v - before.get(k, 0.0)) / size for k, v in after.items()}
    kept = {k: round(v, 2) for k, v in sorted(rows.items(), key=lambda kv: -kv[1]) if v >= 0.1}
    return {"total": round(sum(v for v in rows.values() if v > 0), 2), **kept}


def operator_run(client: Client, kubeconfig: Path, ns: str, size: int, tmp: Path) -> dict[str, Any]:
    op = OperatorProcess(kubeconfig, tmp / ns)
    op.start()
    try:
        assert op.pid is not None
        rss_start = peak_rss_kib(op.pid)
        cpu_before = cpu_seconds(op.pid)
        load_before = load()
        start = time.monotonic()
        create_all(client, [manifest(f"m-{i}", ns) for i in range(size)])
        created = time.monotonic()
        done = wait_observed(client, ns, size, 900)
        return {
            "count": size,
            "create_calls_s": round(created - start, 2),
            "all_status_observed_s": round(done - start, 2),
            "per_model_ms": round((done - start) / size * 1000, 1),
            "operator_cpu_s": round(cpu_seconds(op.pid) - cpu_before, 2),
            "operator_rss_at_start_mib": round(rss_start / 1024, 1),
            "operator_peak_rss_mib": round(peak_rss_kib(op.pid) / 1024, 1),
            "load_avg_before": load_before,
            "load_avg_after": load(),
        }
    finally:
        op.stop()


def host_address() -> str:
    """The first non-loopback IPv4 address of this host (EndpointSlices may not hold loopback ones)."""
    for address in subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split():
        if "." in address and not address.startswith("127."):
            return address
    raise RuntimeError("no non-loopback IPv4 address for the upstreams")


def router_objects(index: int, host: str, ports: list[int]) -> list[dict[str, Any]]:
    name = f"r-{index}"
    model = manifest(name, ROUTER_NS)
    model["spec"]["deployment"] = {"replicas": 1}  # no operator runs: no pods, only our slices
    slices = [
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{name}-{k}",
                "namespace": ROUTER_NS,
                "labels": {"kubernetes.io/service-name": name},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [host], "conditions": {"ready": True}}],
        }
        for k, port in enumerate(ports)
    ]
    return [model, *slices]


def listed_models(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/v1/models")
        return len(json.loads(conn.getresponse().read())["data"])
    except (OSError, ValueError, KeyError):
        return -1
    finally:
        conn.close()


def latencies(host: str, port: int, model: str, count: int) -> list[float]:
    """Milliseconds of `count` sequential POSTs on one keep-alive connection."""
    conn = http.client.HTTPConnection(host, port, timeout=30)
    body = BODY % model.encode()
    headers = {"content-type": "application/json"}
    out = []
    for _ in range(count):
        sent = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body, headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"port {port}, model {model}: HTTP {response.status}")
        out.append((time.perf_counter() - sent) * 1000)
    conn.close()
    return out


def settle(pids: list[int], window: float = 2.0, busy: float = 0.1, timeout: float = 120.0) -> float:
    """Wait until these processes together use under `busy` of a core over `window` seconds (the API
    server, etcd and the router still digesting the objects just created would otherwise be measured
    too); the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        before = sum(cpu_seconds(pid) for pid in pids)
        time.sleep(window)
        if sum(cpu_seconds(pid) for pid in pids) - before < busy * window:
            break
    return round(time.monotonic() - start, 1)


def added_latency(
    host: str, direct: int, router: int, model: str, blocks: int, per_block: int
) -> dict[str, float]:
    latencies(host, direct, model, 50)  # warm-up: connections, the router's pools
    latencies("127.0.0.1", router, model, 50)
    d: list[float] = []
    r: list[float] = []
    for _ in range(blocks):  # interleaved, so a change in the machine's load hits both sides
        d += latencies(host, direct, model, per_block)
        r += latencies("127.0.0.1", router, model, per_block)
    result = {
        "direct_p50_ms": round(percentile(d, 0.5), 3),
        "direct_p99_ms": round(percentile(d, 0.99), 3),
        "router_p50_ms": round(percentile(r, 0.5), 3),
        "router_p99_ms": round(percentile(r, 0.99), 3),
    }
    result["added_p50_ms"] = round(result["router_p50_ms"] - result["direct_p50_ms"], 3)
    result["added_p99_ms"] = round(result["router_p99_ms"] - result["direct_p99_ms"], 3)
    return result


def router_curve(cp: ControlPlane, client: Client, sizes: list[int], tmp: Path, requests: int) -> list[Any]:
    create_namespace(client, ROUTER_NS)
    host = host_address()
    upstream_ports = [free_port() for _ in range(ENDPOINTS)]
    router_port = free_port()
    binary = Path(sys.executable).parent / "localmodel-router"
    env = {**os.environ, "KUBECONFIG": str(cp.kubeconfig)}
    router_argv = [str(binary), "--host", "127.0.0.1", "--port", str(router_port)]
    router_argv += ["--namespace", ROUTER_NS, "--log-level", "warning"]
    rows = []
    with contextlib.ExitStack() as stack:
        for port in upstream_ports:
            argv = [sys.executable, str(ROOT / "bench" / "fake_upstream.py"), "--host", host]
            stack.enter_context(logged_process([*argv, "--port", str(port)], tmp / f"upstream-{port}.log"))
        # The router's admin kubeconfig is a bench shortcut; its RBAC is tested in tests/cluster.
        router = stack.enter_context(logged_process(router_argv, tmp / "router.log", env=env))
        poll_until(lambda: listed_models(router_port) == 0, "the router listing no models", 60, 0.2)
        have = 0
        for size in sizes:
            objects = [o for i in range(have, size) for o in router_objects(i, host, upstream_ports)]
            start = time.monotonic()
            create_all(client, objects)
            created = time.monotonic()
            poll_until(lambda s=size: listed_models(router_port) == s, f"the router listing {size}", 600, 0.2)
            seen = time.monotonic()
            have = size
            rss_synced = rss_kib(router.pid)
            per_block = max(1, requests // 5)
            row: dict[str, Any] = {"models": size, "endpoints_per_model": ENDPOINTS}
            row["settled_after_s"] = settle([router.pid, *cp.pids.values()])
            row["load_avg_before"] = load()
            row.update(added_latency(host, upstream_ports[0], router_port, f"r-{size - 1}", 5, per_block))
            row |= {
                "create_calls_s": round(created - start, 2),
                "last_create_to_listed_s": round(seen - created, 2),
                "router_rss_mib": round(rss_synced / 1024, 1),
                "router_peak_rss_mib": round(rss_kib(router.pid, "VmHWM:") / 1024, 1),
                "requests_per_side": 5 * per_block,
                "load_avg_after": load(),
            }
            print(f"router {size}: {row}", flush=True)
            rows.append(row)
    return rows


def plot(out: Path) -> Path | None:
    """matplotlib lives in the AIPerf environment (make bench-serving sets it up), not the main venv."""
    python = ROOT / ".cache" / "venv-aiperf" / "bin" / "python"
    if not python.exists():
        return None
    png = out.with_suffix(".png")
    done = subprocess.run(
        [str(python), str(ROOT / "bench" / "scale_plot.py"), str(out), str(png)], check=False
    )
    return png if done.returncode == 0 else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100,1000,2000", help="comma-separated LocalModel counts")
    parser.add_argument("--router-sizes", help="the router's sizes (default: --sizes)")
    parser.add_argument("--requests", type=int, default=1000, help="requests per side per router size")
    parser.add_argument("--skip-operator", action="store_true")
    parser.add_argument("--skip-router", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale.json")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    router_sizes = sorted(int(s) for s in (args.router_sizes or args.sizes).split(","))
    results: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "machine": {"cpus": os.cpu_count(), "load_avg_at_start": load()},
        "router_mode": "cluster (LocalModels + EndpointSlices watched on the real API server)",
    }
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if not args.skip_operator:
            results["operator"] = []
            for size in sizes:
                row = operator_size(size, tmp)
                print(f"operator {size}: {row}", flush=True)
                results["operator"].append(row)
                write_results(args.out, results)  # a later size that fails keeps the earlier ones
        if not args.skip_router:
            with ControlPlane() as cp:
                install_crd(cp.kubectl)
                client = Client(KubeConfig.from_file(cp.kubeconfig), field_manager="scale-bench")
                results["router"] = router_curve(cp, client, router_sizes, tmp, args.requests)
                client.close()
    results["machine"]["load_avg_at_end"] = load()
    write_results(args.out, results)
    print(f"wrote {args.out}")
    png = plot(args.out)
    if png is not None:
        print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
