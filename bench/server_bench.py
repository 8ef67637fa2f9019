"""Server benchmark: localmodel's server vs llama-cpp-python in process vs `llama_cpp.server`.

Gemma 3 270M Q4_K_M, streamed 128-token completions, at 1 and at N (default 4) concurrent streams:

- `llama-cpp-python Llama (in process)`: the floor under every server (runtime_bench.inprocess_llama).
- `localmodel batch engine (in process)`: the backend without HTTP (runtime_bench.batched_engine).
- `localmodel server`: `localmodel-runtime serve` (uvicorn, SSE), a subprocess driven over HTTP.
- `llama_cpp.server`: llama-cpp-python's own server, with its default `interrupt_requests=True` and
  with it off.

Per target: tokens/s of one stream (tokens over the stream's wall time, TTFT included), aggregate
tokens/s over all streams, TTFT p50/max, and whether a stream was cut (ended before its 128 tokens:
the end-of-sequence token is suppressed, so only an interruption ends a stream early). Each target runs
`--rounds` times (the in-process ones in a fresh process each) and the median run is reported. Prints a table
and writes bench/results/server.json. Numbers depend on how many cores are free.

    .cache/venv/bin/python bench/server_bench.py [--tokens 128] [--streams 4] [--threads N] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runtime_bench import PROMPT, ROOT, Result, batched_engine, gemma_path, inprocess_llama

sys.path.insert(0, str(ROOT))
from tests.support.net import free_port

BIN = Path(sys.executable).parent
GEMMA_EOS = (1, 106)
"""<eos> and <end_of_turn>: biased away so every stream runs its full length."""
LOCALMODEL_EXTRA = {"ignore_eos": True, "stream_options": {"include_usage": True}}

# llama_cpp.server's high-level Llama has no switch for ggml's extra CPU buffers, whose AMX kernels
# crash on Gemma 3 (see backends/llama.py); the launcher turns them off before the server starts.
LLAMA_CPP_LAUNCHER = """
import runpy, sys, llama_cpp
if "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode():
    defaults = llama_cpp.llama_cpp.llama_model_default_params
    def no_extra_buffers():
        params = defaults()
        params.use_extra_bufts = False
        return params
    llama_cpp.llama_cpp.llama_model_default_params = no_extra_buffers
sys.argv = ["llama_cpp.server", *sys.argv[1:]]
runpy.run_module("llama_cpp.server", run_name="__main__")
"""


@contextlib.contextmanager
def process(command: list[str], url: str, ready_path: str, log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{command[0]} exited with {proc.returncode}:\n{log.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + ready_path, timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} was not ready in time:\n{log.read_text()}")
            time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def one_stream(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], start: float
) -> dict[str, Any]:
    first: float | None = None
    tokens = 0
    usage: int | None = None
    finish: str | None = None
    error: str | None = None
    try:
        async with client.stream("POST", url + "/v1/completions", json=body) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = orjson.loads(line[6:])
                if chunk.get("usage"):
                    usage = chunk["usage"]["completion_tokens"]
                for choice in chunk.get("choices") or []:
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
                    elif first is None:
                        first = time.perf_counter() - start
                        tokens += 1
                    else:
                        tokens += 1  # llama_cpp.server sends one chunk per token
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"  # the server dropped the stream: counted as cut
    end = time.perf_counter() - start
    return {
        "ttft": first or end,
        "end": end,
        "tokens": usage if usage is not None else tokens,
        "finish": finish,
        "error": error,
    }


async def drive(url: str, tokens: int, streams: int, extra: dict[str, Any]) -> dict[str, Any]:
    body = {"prompt": PROMPT, "max_tokens": tokens, "temperature": 0.7, "stream": True, **extra}
    async with httpx.AsyncClient(timeout=600) as client:
        await one_stream(client, url, {**body, "max_tokens": 8, "seed": 0}, time.perf_counter())  # warm-up
        start = time.perf_counter()
        runs = await asyncio.gather(
            *(one_stream(client, url, {**body, "seed": i + 1}, start) for i in range(streams))
        )
    wall = time.perf_counter() - start
    produced = sum(r["tokens"] for r in runs)
    ttfts = [r["ttft"] for r in runs]
    return {
        "streams": streams,
        "tokens": produced,
        "tok_s": statistics.mean(r["tokens"] / r["end"] for r in runs),
        "aggregate_tok_s": produced / wall,
        "ttft_p50_s": statistics.median(ttfts),
        "ttft_max_s": max(ttfts),
        "wall_s": wall,
        "cut": sum(1 for r in runs if r["tokens"] < tokens or r["error"]),
        "errors": sorted({r["error"] for r in runs if r["error"]}),
        "tokens_per_stream": [r["tokens"] for r in runs],
    }


def median_of(runs: list[Result]) -> Result:
    """The run with the median tokens/s of one stream (this machine's other load makes single runs noisy)."""
    ordered = sorted(runs, key=lambda r: float(r["tok_s"]))
    return {**ordered[len(ordered) // 2], "rounds_tok_s": [round(float(r["tok_s"]), 1) for r in runs]}


def localmodel_server(
    model: Path, tokens: int, counts: list[int], threads: int, work: Path, rounds: int
) -> list[Result]:
    port = free_port()
    config = work / "model.yaml"
    parallel = max(counts)
    config.write_text(
        json.dumps(
            {
                "name": "gemma",
                "backend": "llama",
                "context_size": 1024,
                "threads": threads,
                "options": [f"parallel:{parallel}"],
                "parameters": {"model": model.name},
            }
        )
    )
    command = [
        str(BIN / "localmodel-runtime"),
        "serve",
        "--config",
        str(config),
        "--models-dir",
        str(model.parent),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    url = f"http://127.0.0.1:{port}"
    with process(command, url, "/readyz", work / "localmodel.log"):
        return [
            {
                "target": "localmodel server",
                **median_of([asyncio.run(drive(url, tokens, n, LOCALMODEL_EXTRA)) for _ in range(rounds)]),
            }
            for n in counts
        ]


def llama_cpp_server(
    model: Path, tokens: int, counts: list[int], threads: int, work: Path, interrupt: bool, rounds: int
) -> list[Result]:
    port = free_port()
    command = [
        str(BIN / "python"),
        "-c",
        LLAMA_CPP_LAUNCHER,
        "--model",
        str(model),
        "--n_ctx",
        "1024",
        "--n_threads",
        str(threads),
        "--n_threads_batch",
        str(threads),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--interrupt_requests",
        str(interrupt),
        "--verbose",
        "False",
    ]
    url = f"http://127.0.0.1:{port}"
    name = "llama_cpp.server" + ("" if interrupt else " (interrupt off)")
    bias = {"logit_bias": {str(t): -100.0 for t in GEMMA_EOS}}
    with process(command, url, "/v1/models", work / f"llama_cpp_{interrupt}.log"):
        return [
            {"target": name, **median_of([asyncio.run(drive(url, tokens, n, bias)) for _ in range(rounds)])}
            for n in counts
        ]


def in_process(model: Path, tokens: int, streams: int, threads: int, rounds: int) -> list[Result]:
    # Each in a fresh process: ggml's worker threads of one model outlive it and slow the next one down
    # when they share a process (the batch engine measured at half speed right after `Llama`).
    spawn = multiprocessing.get_context("spawn")
    runs = [(inprocess_llama, 1), (batched_engine, 1), (batched_engine, streams)]
    results = []
    for target, n in runs:
        measured = []
        for _ in range(rounds):
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
                measured.append(_per_stream(pool.submit(target, model, tokens, n, threads).result()))
        results.append(median_of(measured))
    return results


def _per_stream(r: Result) -> Result:
    # runtime_bench reports the aggregate as tok_s; here tok_s is one stream's, as for the servers.
    r.setdefault("aggregate_tok_s", r["tok_s"])
    if r["streams"] > 1:
        r["tok_s"] = r["aggregate_tok_s"] / r["streams"]
    r.setdefault("cut", 0)
    return r


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="runs per target; the median is reported")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "server.json")
    args = parser.parse_args()

    model = gemma_path()
    counts = [1, args.streams]
    with tempfile.TemporaryDirectory(prefix="server-bench-") as tmp:
        work = Path(tmp)
        rounds = args.rounds
        results = in_process(model, args.tokens, args.streams, args.threads, rounds)
        results += localmodel_server(model, args.tokens, counts, args.threads, work, rounds)
        results += llama_cpp_server(model, args.tokens, counts, args.threads, work, True, rounds)
        results += llama_cpp_server(model, args.tokens, [args.streams], args.threads, work, False, rounds)

    print(f"Gemma 3 270M Q4_K_M, {args.tokens}-token streamed completions, {args.threads} threads")
    header = (
        f"{'target':40} {'streams':>7} {'tok/s/stream':>12} {'aggregate':>10} {'TTFT p50':>9} "
        f"{'TTFT max':>9} {'cut':>4}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['target']:40} {r['streams']:>7} {r['tok_s']:>12.1f} {r['aggregate_tok_s']:>10.1f} "
            f"{r['ttft_p50_s']:>8.3f}s {r['ttft_max_s']:>8.3f}s {r['cut']:>4}"
        )
    base = results[0]["tok_s"]
    server_one = next(r for r in results if r["target"] == "localmodel server" and r["streams"] == 1)
    print(f"localmodel server, one stream / in-process Llama: {server_one['tok_s'] / base:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "model": "gemma-3-270m Q4_K_M",
        "tokens_per_stream": args.tokens,
        "rounds": args.rounds,
        "threads": args.threads,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load": os.getloadavg()},
        "server_vs_inprocess": server_one["tok_s"] / base,
        "results": results,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
