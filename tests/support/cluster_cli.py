"""`python -m tests.support.controlplane up|down|status` (what `make cluster-up` / `make
cluster-down` run): a control plane plus a process node for people, in the background.

`up` starts a detached `_serve` process that owns everything and records its state in
.cache/cluster/dev/state.json; `down` signals it (and, should it be gone, every recorded
process group) and waits until nothing is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.support.controlplane import CACHE, CLUSTER_ROOT, ControlPlane, ControlPlaneError
from tests.support.processes import process_alive

INSTANCE = "dev"
STATE = CLUSTER_ROOT / INSTANCE / "state.json"
SERVE_LOG = CLUSTER_ROOT / f"{INSTANCE}.serve.log"
KUBECONFIG = CACHE / "kubeconfig"


def _read_state() -> dict[str, object] | None:
    try:
        state: dict[str, object] = json.loads(STATE.read_text())
        return state
    except (OSError, ValueError):
        return None


def up() -> int:
    state = _read_state()
    if state and process_alive(int(str(state["pid"]))):
        print(f"cluster already up: {state['server']} (KUBECONFIG={KUBECONFIG})")
        return 0
    CLUSTER_ROOT.mkdir(parents=True, exist_ok=True)
    with SERVE_LOG.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.controlplane", "_serve"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=Path(__file__).resolve().parents[2],
        )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        state = _read_state()
        if state and state.get("pid") == proc.pid and state.get("ready"):
            print(f"cluster up: {state['server']}\nexport KUBECONFIG={KUBECONFIG}")
            return 0
        if proc.poll() is not None:
            print(f"cluster failed to start; see {SERVE_LOG}", file=sys.stderr)
            return 1
        time.sleep(0.5)
    proc.terminate()
    print(f"cluster did not become ready in time; see {SERVE_LOG}", file=sys.stderr)
    return 1


def down() -> int:
    state = _read_state()
    if state is None:
        print("cluster not running")
        return 0
    pid = int(str(state["pid"]))
    if process_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    # Belt and braces: whatever the server could not stop, by recorded process group.
    for comp_pid in dict(state.get("components") or {}).values():  # type: ignore[call-overload]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(comp_pid), signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    STATE.unlink(missing_ok=True)
    print("cluster down")
    return 0


def status() -> int:
    state = _read_state()
    if state is None or not process_alive(int(str(state["pid"]))):
        print("cluster not running")
        return 1
    comps = dict(state.get("components") or {})  # type: ignore[call-overload]
    dead = [name for name, p in comps.items() if not process_alive(int(p))]
    print(f"cluster up: {state['server']} (KUBECONFIG={KUBECONFIG})" + (f"; DEAD: {dead}" if dead else ""))
    return 1 if dead else 0


def serve() -> int:
    """The background owner of the cluster; SIGTERM/SIGINT tear everything down."""
    from tests.support.processnode import ProcessNode  # needs root and `ip`: only here

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    cp = ControlPlane(name=INSTANCE, kubeconfig_path=KUBECONFIG)
    node: ProcessNode | None = None
    try:
        cp.start()
        node = ProcessNode(cp.kubeconfig, cp.ports["apiserver"], workdir=cp.dir / "node")
        node.start()
        STATE.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "server": cp.server,
                    "kubeconfig": str(KUBECONFIG),
                    "components": cp.pids,
                    "ready": True,
                }
            )
        )
        print(f"cluster up: {cp.server}", flush=True)
        stop.wait()
    except ControlPlaneError as e:
        print(f"cluster failed: {e}", file=sys.stderr)
        return 1
    finally:
        if node is not None:
            node.stop()
        cp.stop()
        STATE.unlink(missing_ok=True)
    return 0


def main(argv: list[str]) -> int:
    commands = {"up": up, "down": down, "status": status, "_serve": serve}
    if len(argv) != 1 or argv[0] not in commands:
        print("usage: python -m tests.support.controlplane up|down|status", file=sys.stderr)
        return 2
    return commands[argv[0]]()
