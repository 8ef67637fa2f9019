"""Soak: mixed streaming and non-streaming traffic through localmodel-router to two real runtimes, with
model churn, reporting the processes' RSS at start and end and the request counts.

The router runs the real CLI with a local table that this script rewrites every `--churn` seconds: a
window of `--models` model names (both runtimes as their endpoints, prefix affinity and least in-flight
alternating) moves on by one, so models are added and deleted all the time. `--workers` clients send
chat and text completions, half of them streamed, to a random model of the window (named by the bearer
token, as a client of one model would). RSS is read from /proc after a warm-up (the start) and at the
end; the run fails when a process grew more than `--max-growth` percent or a request failed with a 5xx.

    .cache/venv/bin/python bench/soak.py [--seconds 1800]        # `make soak`

Writes bench/results/soak.json (or --out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from router_bench import ROOT, free_port, process, wait_http

from tests.support.tiny_gguf import write_tiny_gguf

BIN = Path(sys.executable).parent


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def tree_rss_kib(pid: int) -> int:
    """RSS of a process and its children (the runtime serves from a child of its supervisor)."""
    total = rss_kib(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for child in children.read_text().split() if children.exists() else []:
        total += tree_rss_kib(int(child))
    return total


class Churn:
    def __init__(self, table: Path, endpoints: list[str], size: int) -> None:
        self.table = table
        self.endpoints = endpoints
        self.size = size
        self.next = 0
        self.window: list[str] = []
        self.added = 0
        self.removed = 0

    def step(self) -> None:
        self.window.append(f"soak-{self.next}")
        self.next += 1
        self.added += 1
        if len(self.window) > self.size:
            self.window.pop(0)
            self.removed += 1
        models = [
            {
                "name": name,
                "endpoints": self.endpoints,
                "loadBalancing": "prefixAffinity" if int(name.rsplit("-", 1)[1]) % 2 else "leastInFlight",
            }
            for name in self.window
        ]
        tmp = self.table.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump({"models": models}))
        tmp.replace(self.table)


async def traffic(url: str, churn: Churn, workers: int, stop_at: float, counts: dict[str, int]) -> None:
    async def one(client: httpx.AsyncClient, rng: random.Random) -> str:
        model = rng.choice(churn.window[:-1] or churn.window)  # the newest may not be loaded yet
        stream = rng.random() < 0.5
        chat = rng.random() < 0.5
        prompt = f"soak request {rng.randrange(1000)}"
        body: dict[str, Any] = {"max_tokens": 8, "stream": stream}
        if chat:
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        path = "/v1/chat/completions" if chat else "/v1/completions"
        headers = {"authorization": f"Bearer {model}"}
        kind = ("stream" if stream else "whole") + ("-chat" if chat else "-text")
        if not stream:
            answer = await client.post(url + path, json=body, headers=headers)
            return f"{kind} {answer.status_code}"
        async with client.stream("POST", url + path, json=body, headers=headers) as answer:
            lines = [line async for line in answer.aiter_lines() if line]
        if answer.status_code == 200 and (not lines or lines[-1] != "data: [DONE]"):
            return f"{kind} 200-unfinished"
        return f"{kind} {answer.status_code}"

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        async with httpx.AsyncClient(timeout=120) as client:
            while time.monotonic() < stop_at:
                try:
                    key = await one(client, rng)
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                counts[key] = counts.get(key, 0) + 1

    await asyncio.gather(*(worker(seed) for seed in range(workers)))


async def churning(churn: Churn, every: float, stop_at: float) -> None:
    while time.monotonic() < stop_at:
        await asyncio.sleep(every)
        churn.step()


async def run(url: str, churn: Churn, args: argparse.Namespace, pids: dict[str, int]) -> dict[str, Any]:
    started = time.monotonic()
    stop_at = started + args.seconds
    warm_up = min(60.0, args.seconds / 6)
    counts: dict[str, int] = {}
    rss: dict[str, dict[str, int]] = {}

    async def sample_start() -> None:
        await asyncio.sleep(warm_up)
        rss["start"] = {name: tree_rss_kib(pid) for name, pid in pids.items()}

    await asyncio.gather(
        traffic(url, churn, args.workers, stop_at, counts),
        churning(churn, args.churn, stop_at),
        sample_start(),
    )
    rss["end"] = {name: tree_rss_kib(pid) for name, pid in pids.items()}
    growth = {
        name: round((rss["end"][name] - rss["start"][name]) / rss["start"][name] * 100, 2) for name in pids
    }
    return {
        "seconds": args.seconds,
        "warm_up_s": warm_up,
        "rss_kib": rss,
        "rss_growth_percent": growth,
        "requests": dict(sorted(counts.items())),
        "requests_total": sum(counts.values()),
        "models_added": churn.added,
        "models_removed": churn.removed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1800.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--models", type=int, default=20, help="models in the churning window")
    parser.add_argument("--churn", type=float, default=2.0, help="seconds between two table changes")
    parser.add_argument("--max-growth", type=float, default=5.0, help="percent of RSS growth allowed")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "soak.json")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    write_tiny_gguf(tmp / "tiny.gguf")
    config = tmp / "model.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "backend": "llama",
                "context_size": 512,
                "options": ["parallel:4"],
                "parameters": {"model": "tiny.gguf"},
            }
        )
    )
    runtime_ports = [free_port(), free_port()]
    router_port = free_port()
    table = tmp / "table.yaml"
    churn = Churn(table, [f"127.0.0.1:{port}" for port in runtime_ports], args.models)
    for _ in range(args.models):
        churn.step()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("runtime", "router"))}

    def runtime(port: int) -> list[str]:
        command = [str(BIN / "localmodel-runtime"), "serve", "--config", str(config)]
        return [*command, "--models-dir", str(tmp), "--host", "127.0.0.1", "--port", str(port)]

    url = f"http://127.0.0.1:{router_port}"
    router_cmd = [sys.executable, "-m", "localmodel_router.main", "--host", "127.0.0.1"]
    router_cmd += ["--port", str(router_port), "--local-table", str(table), "--log-level", "warning"]
    with (
        process(runtime(runtime_ports[0]), tmp / "a.log", env=env) as first,
        process(runtime(runtime_ports[1]), tmp / "b.log", env=env) as second,
        process(router_cmd, tmp / "router.log", env=env) as router,
    ):
        for port in runtime_ports:
            wait_http(f"http://127.0.0.1:{port}/readyz", 120)
        wait_http(url + "/readyz", 30, router)
        pids = {"router": router.pid, "runtime_a": first.pid, "runtime_b": second.pid}
        results = asyncio.run(run(url, churn, args, pids))
        procs = {"router": router, "runtime_a": first, "runtime_b": second}
        alive = {name: proc.poll() is None for name, proc in procs.items()}
    results["processes_alive_at_end"] = alive
    results["machine"] = {"cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    failures = [k for k in results["requests"] if k.split()[-1].startswith("5") or "unfinished" in k]
    grown = {k: v for k, v in results["rss_growth_percent"].items() if v > args.max_growth}
    if failures or grown or not all(alive.values()):
        print(f"soak: FAILED (5xx or cut: {failures}; grown: {grown}; alive: {alive})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
