"""Slowloris against localmodel-router: normal requests' latency with and without 2,000 slow connections.

The router (the real CLI, local table) sits in front of the fake runtime. Phase "baseline": `--workers`
clients send chat completions back to back for `--duration` seconds. Phase "slowloris": the same, while
`--connections` connections each send a request line and then one header line every `--trickle`
seconds, never finishing; every one the router closes (its header deadline, 408) is opened again, so
the attack holds its count for the whole phase. Reports p50/p99/max latency, requests/s and errors of
the normal requests, and how many slow connections the router cut.

    .cache/venv/bin/python bench/slowloris.py [--connections 2000] [--duration 20] [--header-timeout 10]

Writes bench/results/slowloris.json. Numbers are for one shared machine; compare phases, not machines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from router_bench import free_port, percentile, process, wait_http

ROOT = Path(__file__).resolve().parent.parent
BODY = {"model": "bench", "messages": [{"role": "user", "content": "Say hello to the benchmark, please."}]}


async def normal_traffic(url: str, workers: int, duration: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    deadline = time.perf_counter() + duration

    async def worker(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                answer = await client.post(url + "/v1/chat/completions", json=BODY)
                key = str(answer.status_code)
            except httpx.HTTPError as exc:
                key = type(exc).__name__
            if key == "200":
                latencies.append((time.perf_counter() - started) * 1000)
            else:
                errors[key] = errors.get(key, 0) + 1

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=workers)) as client:
        await asyncio.gather(*(worker(client) for _ in range(workers)))
    latencies.sort()
    return {
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / duration, 1),
        "p50_ms": round(percentile(latencies, 0.5), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(latencies[-1], 2) if latencies else None,
        "errors": errors,
    }


class Slowloris:
    def __init__(self, port: int, connections: int, trickle: float) -> None:
        self.port = port
        self.connections = connections
        self.trickle = trickle
        self.open = 0
        self.cut = 0
        self.answered_408 = 0
        self.refused = 0

    async def _one(self, index: int) -> None:
        while True:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                self.refused += 1
                await asyncio.sleep(0.5)
                continue
            self.open += 1
            try:
                writer.write(
                    f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-slow-{index}: 0\r\n".encode()
                )
                line = 0
                while True:
                    try:
                        data = await asyncio.wait_for(reader.read(4096), self.trickle)
                    except TimeoutError:
                        line += 1
                        writer.write(f"x-more-{line}: {line}\r\n".encode())
                        await writer.drain()
                        continue
                    if data.startswith(b"HTTP/1.1 408"):
                        self.answered_408 += 1
                    if not data or data.startswith(b"HTTP/1.1"):
                        self.cut += 1
                        break
            except OSError:
                self.cut += 1
            finally:
                self.open -= 1
                writer.close()

    def stats(self) -> dict[str, int]:
        return {
            "held": self.open,
            "cut_by_router": self.cut,
            "answered_408": self.answered_408,
            "attempts_refused": self.refused,
        }

    async def run(self, status: Path) -> None:
        """Hold the connections until killed, writing the counts to `status` every half second."""
        tasks = []
        for index in range(self.connections):
            tasks.append(asyncio.create_task(self._one(index)))
            if index % 200 == 199:
                await asyncio.sleep(0.05)  # do not overflow the listen backlog
        while True:
            status.write_text(json.dumps(self.stats()))  # noqa: ASYNC240 (a few bytes, twice a second)
            await asyncio.sleep(0.5)


def attack_status(status: Path) -> dict[str, int]:
    try:
        return dict(json.loads(status.read_text()))
    except (OSError, ValueError):
        return {"held": 0}


def phases(url: str, args: argparse.Namespace, attacker: list[str], tmp: Path) -> dict[str, Any]:
    """Baseline, then the same traffic with the attacker (its own process, so that its work does not
    slow the measuring client) holding its connections."""
    results: dict[str, Any] = {"baseline": asyncio.run(normal_traffic(url, args.workers, args.duration))}
    status = tmp / "attack.json"
    with process([*attacker, "--status", str(status)], tmp / "attacker.log"):
        deadline = time.monotonic() + 120
        while attack_status(status)["held"] < args.connections * 0.95:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the attacker holds only {attack_status(status)} connections")
            time.sleep(0.2)
        at_start = attack_status(status)
        during = asyncio.run(normal_traffic(url, args.workers, args.duration))
        at_end = attack_status(status)
    during["slow_connections_held_at_start"] = at_start["held"]
    during["slow_connections_held_at_end"] = at_end["held"]
    for key in ("cut_by_router", "answered_408", "attempts_refused"):
        during[f"slow_connections_{key}"] = at_end[key] - at_start.get(key, 0)
    results["slowloris"] = during
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of normal traffic per phase")
    parser.add_argument("--workers", type=int, default=4, help="normal clients, back to back")
    parser.add_argument("--trickle", type=float, default=3.0, help="seconds between a slow client's lines")
    parser.add_argument("--header-timeout", type=float, default=10.0, help="the router's --header-timeout")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "slowloris.json")
    parser.add_argument("--attack", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--status", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.attack is not None:  # the attacker process
        assert args.status is not None
        asyncio.run(Slowloris(args.attack, args.connections, args.trickle).run(args.status))
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="slowloris-"))
    ports = {"upstream": free_port(), "router": free_port()}
    table = tmp / "table.yaml"
    table.write_text(f"models:\n  - name: bench\n    endpoints: ['127.0.0.1:{ports['upstream']}']\n")
    paths = [str(ROOT / p) for p in ("runtime", "router")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    upstream_cmd = [
        sys.executable,
        str(ROOT / "bench" / "fake_upstream.py"),
        "--port",
        str(ports["upstream"]),
    ]
    router_cmd = [sys.executable, "-m", "localmodel_router.main", "--host", "127.0.0.1"]
    router_cmd += ["--port", str(ports["router"]), "--local-table", str(table), "--log-level", "error"]
    router_cmd += ["--header-timeout", str(args.header_timeout)]
    attacker = [sys.executable, __file__, "--attack", str(ports["router"])]
    attacker += ["--connections", str(args.connections), "--trickle", str(args.trickle)]
    url = f"http://127.0.0.1:{ports['router']}"
    with (
        process(upstream_cmd, tmp / "upstream.log", env=env),
        process(router_cmd, tmp / "router.log", env=env),
    ):
        wait_http(f"http://127.0.0.1:{ports['upstream']}/v1/models", 30)
        wait_http(url + "/v1/models", 30)
        measured = phases(url, args, attacker, tmp)
    results = {
        "machine": {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()},
        "settings": {
            "connections": args.connections,
            "duration_s": args.duration,
            "workers": args.workers,
            "trickle_s": args.trickle,
            "router_header_timeout_s": args.header_timeout,
        },
        **measured,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    for phase in ("baseline", "slowloris"):
        row = results[phase]
        print(
            f"{phase:10} {row['requests']:6} req  {row['requests_per_s']:8} req/s  p50 {row['p50_ms']} ms"
            f"  p99 {row['p99_ms']} ms  max {row['max_ms']} ms  errors {row['errors']}"
        )
    print(json.dumps({k: v for k, v in results["slowloris"].items() if k.startswith("slow_")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
