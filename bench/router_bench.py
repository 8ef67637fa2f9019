"""Router overhead benchmark: direct to a fake runtime vs through localmodel-router, nginx and LiteLLM.

One run, one machine, loopback only, bounded in time. Measures with `wrk` (1 thread, POST of a fixed
chat completion): p50/p99 latency at 1 and 64 connections and requests/s at 64; "added" is the target
minus direct. Streams: N concurrent SSE streams held through the router (a small asyncio client), and
per-event forwarding delay (arrival time minus the upstream's send time stamped in each event).

    .cache/venv/bin/python bench/router_bench.py [--duration 5] [--streams 1000] [--skip-litellm]

Needs `wrk` and `nginx` (apt-get install -y nginx wrk); LiteLLM is used when
.cache/bench-venv-litellm/bin/litellm exists. Writes bench/results/router.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.support.net import free_port  # noqa: E402  (one free_port for tests and benches)
from tests.support.processes import logged_process as process  # noqa: E402

PYTHON = sys.executable
LITELLM = ROOT / ".cache" / "bench-venv-litellm" / "bin" / "litellm"
# LiteLLM refuses to start without a master key; every target gets the same header so requests match.
MASTER_KEY = "sk-bench-" + os.urandom(8).hex()
BODY = '{"model":"bench","messages":[{"role":"user","content":"Say hello to the benchmark, please."}]}'
NGINX_CONF = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fcgi;
  uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  upstream fake {{ server 127.0.0.1:{upstream}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://fake; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"""


def wait_http(url: str, bound: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status < 500:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up in {bound:g}s")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk_one_and_many(url: str, duration: float, script: Path) -> dict[str, float]:
    """A warm-up (pools, caches, connections), then wrk over one connection and over 64: the p50, p99
    and requests per second of each, and the errors of both."""
    wrk(url, 8, 1.0, script)
    one = wrk(url, 1, duration, script)
    many = wrk(url, 64, duration, script)
    return {
        "p50_c1_ms": one["p50_ms"],
        "p99_c1_ms": one["p99_ms"],
        "rps_c1": one["rps"],
        "p50_c64_ms": many["p50_ms"],
        "p99_c64_ms": many["p99_ms"],
        "rps_c64": many["rps"],
        "errors": one["errors"] + many["errors"],
    }


def wrk(url: str, connections: int, duration: float, script: Path) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=duration + 30,
        check=True,
    ).stdout
    result: dict[str, float] = {}
    for pct in ("50", "99"):
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert match, out
        result[f"p{pct}_ms"] = round(float(match.group(1)) * _UNITS[match.group(2)], 3)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rps, out
    result["rps"] = float(rps.group(1))
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors:.*", out)
    result["errors"] = float(errors.group(1)) if errors else 0.0
    if socket_errors:
        result["errors"] += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(0)))
    return result


_SENT = re.compile(rb'"x_sent":([\d.]+)')


async def one_stream(
    port: int, events: int, interval_ms: float, delays: list[float], first: list[float], delay: float = 0.0
) -> bool:
    await asyncio.sleep(delay)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = json.dumps(
        {"model": "bench", "stream": True, "x_events": events, "x_interval_ms": interval_ms, "messages": []}
    ).encode()
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
    )
    buffer = b""
    seen = 0
    try:
        while True:
            data = await reader.read(65536)
            now = time.time()
            if not data:
                return False
            buffer += data
            for match in _SENT.finditer(data):
                # The first event also carries connection set-up; steady-state forwarding is the rest.
                (first if seen == 0 else delays).append((now - float(match.group(1))) * 1000)
                seen += 1
            if b"data: [DONE]" in buffer:
                return True
    finally:
        writer.close()


async def streams(port: int, count: int, events: int, interval_ms: float, bound: float) -> dict[str, float]:
    delays: list[float] = []
    first: list[float] = []
    started = time.monotonic()
    # Streams start spread over one event interval, as independent clients would, rather than in
    # lock-step (which measures a 1,000-event burst every interval instead of forwarding delay).
    spread = interval_ms / 1000 / count
    tasks = [one_stream(port, events, interval_ms, delays, first, i * spread) for i in range(count)]
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), bound)
    ok = sum(1 for r in results if r is True)
    return {
        "streams": count,
        "completed": ok,
        "seconds": round(time.monotonic() - started, 2),
        "event_delay_p50_ms": percentile(delays, 0.5),
        "event_delay_p99_ms": percentile(delays, 0.99),
        "first_event_delay_p50_ms": percentile(first, 0.5),
        "first_event_delay_p99_ms": percentile(first, 0.99),
    }


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return -1.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * fraction))], 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "router.json")
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            print(f"router_bench: {tool} not found (apt-get install -y nginx wrk)", file=sys.stderr)
            return 2
    tmp = Path(tempfile.mkdtemp(prefix="router-bench-"))
    script = tmp / "post.lua"
    script.write_text(
        f"wrk.method = 'POST'\nwrk.body = '{BODY}'\nwrk.headers['Content-Type'] = 'application/json'\n"
        f"wrk.headers['Authorization'] = 'Bearer {MASTER_KEY}'\n"
    )
    ports = {name: free_port() for name in ("upstream", "router", "nginx", "litellm")}
    table = tmp / "table.yaml"
    table.write_text(f"models:\n  - name: bench\n    endpoints: ['127.0.0.1:{ports['upstream']}']\n")
    (tmp / "nginx.conf").write_text(
        NGINX_CONF.format(dir=tmp, upstream=ports["upstream"], port=ports["nginx"])
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "router")}
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()}}
    rows: dict[str, dict[str, float]] = {}
    upstream_cmd = [PYTHON, str(ROOT / "bench" / "fake_upstream.py"), "--port", str(ports["upstream"])]
    router_cmd = [
        PYTHON,
        "-m",
        "localmodel_router.main",
        "--host",
        "127.0.0.1",
        "--port",
        str(ports["router"]),
    ]
    router_cmd += ["--local-table", str(table), "--log-level", "warning"]
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    with (
        process(upstream_cmd, tmp / "upstream.log", env=env),
        process(router_cmd, tmp / "router.log", env=env),
        process(
            [nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"], tmp / "nginx.log"
        ),
    ):
        targets = {"direct": ports["upstream"], "router": ports["router"], "nginx": ports["nginx"]}
        for port in targets.values():
            wait_http(f"http://127.0.0.1:{port}/v1/models", 30)
        litellm = None
        if not args.skip_litellm and LITELLM.exists():
            config = tmp / "litellm.yaml"
            config.write_text(
                "model_list:\n  - model_name: bench\n    litellm_params:\n      model: openai/bench\n"
                f"      api_base: http://127.0.0.1:{ports['upstream']}/v1\n      api_key: dummy\n"
            )
            litellm_env = {
                **os.environ,
                "LITELLM_LOG": "ERROR",
                "LITELLM_TELEMETRY": "False",
                "LITELLM_MASTER_KEY": MASTER_KEY,
            }
            command = [
                str(LITELLM),
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(ports["litellm"]),
            ]
            litellm = subprocess.Popen(
                [*command, "--num_workers", "1"],
                stdout=(tmp / "litellm.log").open("wb"),
                stderr=subprocess.STDOUT,
                env=litellm_env,
            )
            try:
                wait_http(f"http://127.0.0.1:{ports['litellm']}/health/liveliness", 120, litellm)
                targets["litellm"] = ports["litellm"]
            except RuntimeError as exc:
                print(f"router_bench: LiteLLM skipped: {exc}", file=sys.stderr)
        try:
            for name, port in targets.items():
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                rows[name] = wrk_one_and_many(url, args.duration, script)
        finally:
            if litellm is not None:
                litellm.terminate()
                litellm.wait(10)
        direct = rows["direct"]
        for row in rows.values():
            for key in ("p50_c1_ms", "p99_c1_ms", "p50_c64_ms", "p99_c64_ms"):
                row[f"added_{key}"] = round(row[key] - direct[key], 3)
        results["http"] = rows
        stream_results: dict[str, Any] = {}
        for name in ("direct", "router"):
            port = targets[name]
            # Forwarding delay: a few streams, events 20 ms apart, so each event travels alone.
            stream_results[f"{name}_delay"] = asyncio.run(streams(port, 10, 50, 20.0, 60))
            # Held streams: every stream stays open ~5 s (10 events, 500 ms apart).
            stream_results[f"{name}_held"] = asyncio.run(streams(port, args.streams, 10, 500.0, 120))
        results["streams"] = stream_results
    results["machine"]["load_avg_at_end"] = os.getloadavg()
    results["versions"] = versions(nginx)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results["command"] = " ".join(sys.argv)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def versions(nginx: str) -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    nginx_v = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False)
    found["nginx"] = nginx_v.stderr.strip().rpartition("/")[2]
    if LITELLM.exists():
        probe = [
            str(LITELLM.with_name("python")),
            "-c",
            "import importlib.metadata as m; print(m.version('litellm'))",
        ]
        found["litellm"] = subprocess.run(probe, capture_output=True, text=True, check=False).stdout.strip()
    return found


def print_table(results: dict[str, Any]) -> None:
    header = (
        f"{'target':<8} {'p50@1':>8} {'p99@1':>8} {'+p50@1':>8} {'+p99@1':>8} {'p50@64':>8} {'p99@64':>8}"
    )
    print(header + f" {'+p50@64':>8} {'rps@64':>9} {'errors':>6}   (ms)")
    for name, row in results["http"].items():
        print(
            f"{name:<8} {row['p50_c1_ms']:>8.3f} {row['p99_c1_ms']:>8.3f} {row['added_p50_c1_ms']:>8.3f}"
            f" {row['added_p99_c1_ms']:>8.3f} {row['p50_c64_ms']:>8.2f} {row['p99_c64_ms']:>8.2f}"
            f" {row['added_p50_c64_ms']:>8.2f} {row['rps_c64']:>9.0f} {row['errors']:>6.0f}"
        )
    for name, row in results["streams"].items():
        print(
            f"streams {name:<13} {row['completed']}/{row['streams']} completed in {row['seconds']}s;"
            f" event delay p50 {row['event_delay_p50_ms']} ms, p99 {row['event_delay_p99_ms']} ms;"
            f" first event p50 {row['first_event_delay_p50_ms']} ms, p99 {row['first_event_delay_p99_ms']} ms"
        )


if __name__ == "__main__":
    sys.exit(main())
