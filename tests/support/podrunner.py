"""The process node's per-pod worker: runs a pod's containers as local processes and reports
the pod's status the way a kubelet would (phase, podIP, container states, Ready conditions).

One thread per pod, ticking a few times a second: init containers one after another, then the
main containers, restarts with exponential back-off (CrashLoopBackOff), probes, termination
messages (the file named by $LOCALMODEL_TERMINATION_LOG stands in for terminationMessagePath;
FallbackToLogsOnError takes the log's tail), and a graceful stop when the pod is deleted (the preStop exec
hooks, then SIGTERM, then SIGKILL at the end of the grace period).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from tests.support import podspec
from tests.support.podvolumes import VolumeError, prepare_volumes

if TYPE_CHECKING:
    from tests.support.processnode import ProcessNode

JsonDict = dict[str, Any]
# Where a process writes its termination message: the kubelet mounts a file at the container's
# terminationMessagePath; a process here gets its own host file through this variable instead.
TERMINATION_LOG_ENV = "LOCALMODEL_TERMINATION_LOG"
MAX_MESSAGE_BYTES = 4096  # the kubelet's limit per container
FALLBACK_LOG_LINES, FALLBACK_LOG_BYTES = 80, 2048  # FallbackToLogsOnError: the log's tail


def fallback_message(output: bytes) -> str:
    """The termination message the kubelet makes of a failed container's log (FallbackToLogsOnError)."""
    tail = b"\n".join(output.splitlines()[-FALLBACK_LOG_LINES:])[-FALLBACK_LOG_BYTES:]
    return tail.decode(errors="replace")


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Probe:
    spec: JsonDict
    next_at: float = 0.0
    successes: int = 0
    failures: int = 0
    ok: bool = False


@dataclass
class _Container:
    spec: JsonDict
    init: bool
    proc: subprocess.Popen[bytes] | None = None
    restart_count: int = 0
    state: JsonDict = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: JsonDict = field(default_factory=dict)
    next_start: float = 0.0  # monotonic time before which a restart must wait (back-off)
    done: bool = False  # init container finished, or a container that will not restart
    exit_code: int | None = None
    probes: dict[str, _Probe] = field(default_factory=dict)
    log_offset: int = 0  # where this run's output starts in the container's log file

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def ready(self) -> bool:
        if self.proc is None or "running" not in self.state:
            return False
        return all(p.ok for k, p in self.probes.items() if k in ("readiness", "startup"))


class PodWorker(threading.Thread):
    def __init__(self, node: ProcessNode, pod: JsonDict) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}-{meta['name']}", daemon=True)
        self.node, self.pod = node, pod
        self.key = f"{meta['namespace']}/{meta['name']}"
        self.uid = str(meta["uid"])
        self.dir = node.dir / "pods" / self.uid
        self._stop_requested = threading.Event()
        self._lock = threading.Lock()
        spec = pod["spec"]
        self.init = [_Container(c, True) for c in spec.get("initContainers") or []]
        self.main = [_Container(c, False) for c in spec.get("containers") or []]
        self.addr: Any = None
        self.volumes: dict[str, Path] | None = None
        self.start_time = now_rfc3339()
        self._last_report = ""
        self.finished = threading.Event()

    # ------------------------------------------------------------------ control
    def update(self, pod: JsonDict) -> None:
        with self._lock:
            self.pod = pod

    def shutdown(self) -> None:
        """Stop without deleting the pod object (the node is going away)."""
        self._stop_requested.set()

    def run(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.addr = self.node.net.allocate(
                self.pod["spec"].get("hostname") or self.pod["metadata"]["name"]
            )
            while not self._stop_requested.is_set():
                with self._lock:
                    pod = self.pod
                if pod["metadata"].get("deletionTimestamp"):
                    self._terminate(pod)
                    return
                self._tick(pod)
                self._report(pod)
                self._stop_requested.wait(0.25)
            self._stop_all(grace=2.0)
        except Exception as e:  # keep the node alive; a broken pod should be visible, not fatal
            self.node.log(f"{self.key}: worker failed: {e!r}\n{traceback.format_exc()}")
            self._stop_all(grace=2.0)
        finally:
            self._release()
            self.finished.set()

    # ------------------------------------------------------------------ one step
    def _tick(self, pod: JsonDict) -> None:
        if self.volumes is None:
            try:
                self.volumes = prepare_volumes(self.node.client, pod, self.dir, self.node.pvc_root)
            except (VolumeError, ApiError) as e:
                for c in self.init + self.main:
                    c.state = {"waiting": {"reason": "ContainerCreating", "message": str(e)}}
                return
        policy = pod["spec"].get("restartPolicy", "Always")
        pending_init = next((c for c in self.init if not c.done), None)
        if pending_init is not None:
            # Init containers restart unless the pod's policy is Never.
            self._step(pod, pending_init, "Never" if policy == "Never" else "OnFailure")
            return
        for c in self.main:
            self._step(pod, c, policy)

    def _step(self, pod: JsonDict, c: _Container, policy: str) -> None:
        now = time.monotonic()
        if c.proc is not None:
            code = c.proc.poll()
            if code is None:
                self._run_probes(c, now)
                return
            self._exited(c, code, policy)
        if c.done or now < c.next_start:
            return
        self._start(pod, c)

    def _exited(self, c: _Container, code: int, policy: str) -> None:
        started = c.state.get("running", {}).get("startedAt", self.start_time)
        reason = "Completed" if code == 0 else "Error"
        term = {
            "exitCode": code,
            "reason": reason,
            "startedAt": started,
            "finishedAt": now_rfc3339(),
            "containerID": f"process://{c.proc.pid if c.proc else 0}",
        }
        message = self._termination_message(c, code)
        if message:
            term["message"] = message
        c.proc, c.exit_code = None, code
        for p in c.probes.values():
            p.ok, p.successes, p.failures = False, 0, 0
        restart = policy == "Always" or (policy == "OnFailure" and code != 0)
        if c.init and code == 0:
            restart = False
        if not restart:
            c.state, c.done = {"terminated": term}, True
            return
        c.last_state = {"terminated": term}
        # Kubelet-style back-off: the first restart is immediate, then base * 2^n up to a cap.
        delay = min(self.node.backoff_base * 2 ** max(c.restart_count - 1, 0), self.node.backoff_cap)
        c.next_start = time.monotonic() + (delay if c.restart_count else 0.0)
        msg = f"back-off {delay:.0f}s restarting failed container={c.name} pod={self.key}"
        c.state = {"waiting": {"reason": "CrashLoopBackOff", "message": msg}}
        c.restart_count += 1

    def _termination_log(self, c: _Container) -> Path:
        return self.dir / "termination" / f"{'init-' if c.init else ''}{c.name}"

    def _log_path(self, c: _Container) -> Path:
        return self.dir / "logs" / f"{c.name}.log"

    def _termination_message(self, c: _Container, code: int) -> str:
        """What the kubelet reports as `terminated.message`: the file the process wrote, else (with
        FallbackToLogsOnError and a failure) the tail of this run's log."""
        path = self._termination_log(c)
        with contextlib.suppress(OSError):
            data = path.read_bytes()[:MAX_MESSAGE_BYTES]
            if data.strip():
                return data.decode(errors="replace")
        if code == 0 or c.spec.get("terminationMessagePolicy") != "FallbackToLogsOnError":
            return ""
        try:
            with self._log_path(c).open("rb") as f:
                f.seek(c.log_offset)
                output = f.read()
        except OSError:
            return ""
        return fallback_message(output)

    def _start(self, pod: JsonDict, c: _Container) -> None:
        image = str(c.spec.get("image", ""))
        mapped = podspec.resolve_image(self.node.images, image)
        if mapped is None:
            # Nothing can provide this image: like a registry that does not have it.
            msg = f'Back-off pulling image "{image}": no local program for this image on the process node'
            c.state = {"waiting": {"reason": "ImagePullBackOff", "message": msg}}
            return
        assert self.volumes is not None and self.addr is not None
        termination_log = self._termination_log(c)
        termination_log.parent.mkdir(parents=True, exist_ok=True)
        termination_log.write_bytes(b"")  # each run starts with an empty message
        base = {**self.node.base_env(pod), TERMINATION_LOG_ENV: str(termination_log)}
        try:
            env = podspec.build_env(self.node.client, pod, c.spec, base, self.addr.ip, self.node.host_ip)
            mounts = podspec.container_mounts(c.spec, self.volumes)
        except (podspec.ConfigError, ApiError) as e:
            c.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(e)}}
            return
        self._ensure_mountpoints(mounts)
        hostname = pod["spec"].get("hostname") or pod["metadata"]["name"]
        argv = podspec.launch_argv(
            self.addr.netns,
            hostname,
            mounts,
            c.spec.get("workingDir"),
            podspec.build_argv(mapped, c.spec, env),
        )
        log = self._log_path(c)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            c.log_offset = out.tell()
            c.proc = subprocess.Popen(
                argv,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        c.state = {"running": {"startedAt": now_rfc3339()}}
        now = time.monotonic()
        c.probes = {
            kind: _Probe(c.spec[key], next_at=now + float(c.spec[key].get("initialDelaySeconds", 0)))
            for kind, key in (
                ("startup", "startupProbe"),
                ("readiness", "readinessProbe"),
                ("liveness", "livenessProbe"),
            )
            if c.spec.get(key)
        }

    def _run_probes(self, c: _Container, now: float) -> None:
        started = c.probes.get("startup")
        for kind, p in c.probes.items():
            if now < p.next_at or (kind != "startup" and started is not None and not started.ok):
                continue
            if kind == "startup" and p.ok:
                continue
            p.next_at = now + float(p.spec.get("periodSeconds", 10))
            pid = c.proc.pid if c.proc else None
            if podspec.run_probe(p.spec, c.spec, self.addr.ip, pid):
                p.successes, p.failures = p.successes + 1, 0
                p.ok = p.ok or p.successes >= int(p.spec.get("successThreshold", 1))
            else:
                p.failures, p.successes = p.failures + 1, 0
                if p.failures >= int(p.spec.get("failureThreshold", 3)):
                    p.ok = False
                    if kind in ("liveness", "startup") and c.proc is not None:
                        _kill_group(c.proc, grace=2.0)  # the next tick sees the exit and restarts

    # ------------------------------------------------------------------ status
    def _status(self, pod: JsonDict) -> JsonDict:
        def cstatus(c: _Container) -> JsonDict:
            s: JsonDict = {
                "name": c.name,
                "image": c.spec.get("image", ""),
                "imageID": "",
                "ready": c.ready,
                "restartCount": c.restart_count,
                "state": c.state,
                "started": "running" in c.state,
            }
            if c.last_state:
                s["lastState"] = c.last_state
            if c.proc is not None:
                s["containerID"] = f"process://{c.proc.pid}"
            return s

        initialized = all(c.done for c in self.init)
        mains_done = all(c.done for c in self.main)
        if any(c.done and c.exit_code not in (0, None) for c in self.init):
            phase = "Failed"
        elif mains_done and self.main:
            phase = "Succeeded" if all(c.exit_code == 0 for c in self.main) else "Failed"
        elif (
            initialized
            and self.volumes is not None
            and all(c.proc is not None or c.restart_count > 0 or c.done for c in self.main)
        ):
            phase = "Running"
        else:
            phase = "Pending"
        ready = phase == "Running" and all(c.ready for c in self.main)

        def cond(kind: str, ok: bool) -> JsonDict:
            return {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None}

        conditions = [
            cond("PodReadyToStartContainers", self.addr is not None),
            cond("Initialized", initialized),
            cond("ContainersReady", ready),
            cond("Ready", ready),
            cond("PodScheduled", True),
        ]
        ip = self.addr.ip if self.addr is not None else None
        return {
            "phase": phase,
            "hostIP": self.node.host_ip,
            "hostIPs": [{"ip": self.node.host_ip}],
            "podIP": ip,
            "podIPs": [{"ip": ip}] if ip else None,
            "startTime": self.start_time,
            "conditions": conditions,
            "qosClass": pod.get("status", {}).get("qosClass", "BestEffort"),
            "initContainerStatuses": [cstatus(c) for c in self.init] or None,
            "containerStatuses": [cstatus(c) for c in self.main],
        }

    def _report(self, pod: JsonDict) -> None:
        status = self._status(pod)
        body = json.dumps(status, sort_keys=True)
        if body == self._last_report:
            return
        # Transition times only change when a condition's status changes, as in the kubelet.
        old = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}
        for c in status["conditions"]:
            prev = old.get(c["type"])
            same = prev is not None and prev.get("status") == c["status"]
            c["lastTransitionTime"] = prev.get("lastTransitionTime") if same and prev else now_rfc3339()
        try:
            self.node.client.patch(
                Pod.Status,
                pod["metadata"]["name"],
                {"status": status},
                namespace=pod["metadata"]["namespace"],
                patch_type=PatchType.MERGE,
            )
            self._last_report = body
        except ApiError as e:
            if e.status.code != 404:
                self.node.log(f"{self.key}: status update failed: {e.status.message}")

    # ------------------------------------------------------------------ teardown
    def _terminate(self, pod: JsonDict) -> None:
        meta = pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
        deadline = time.monotonic() + float(grace)
        self._pre_stop(deadline)
        self._stop_all(grace=max(deadline - time.monotonic(), 0.0))
        try:  # the kubelet's last word: the processes are gone, remove the object now
            self.node.client.delete(Pod, meta["name"], namespace=meta["namespace"], grace_period=0)
        except ApiError as e:
            if e.status.code != 404:
                self.node.log(f"{self.key}: final delete failed: {e.status.message}")

    def _pre_stop(self, deadline: float) -> None:
        """The running containers' preStop exec hooks, as the kubelet runs them before SIGTERM and within
        the grace period. They run on the host, not inside the pod: enough for the `sleep` that keeps a
        pod serving while its endpoint is removed, which is what the product's hooks do."""
        for c in self.main:
            command = ((c.spec.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command")
            if c.proc is None or c.proc.poll() is not None or not command:
                continue
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run(
                    command, timeout=max(deadline - time.monotonic(), 0.01), capture_output=True, check=False
                )

    def _stop_all(self, grace: float) -> None:
        procs = [c.proc for c in self.init + self.main if c.proc is not None]
        for p in procs:
            _signal(p, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=max(deadline - time.monotonic(), 0.01))
            _signal(p, signal.SIGKILL)
            p.wait()
        for c in self.init + self.main:
            c.proc = None

    def _ensure_mountpoints(self, mounts: list[podspec.Mount]) -> None:
        """Bind mounts need an existing target on the host; create missing ones as directories
        (or files, for file sources). The node removes them when it stops, not before: removing
        a directory that is a mountpoint in another pod's namespace would unmount it there."""
        with self.node.mountpoint_lock:
            for m in mounts:
                target = Path(m.target)
                if target.exists():
                    continue
                first_missing = target
                while not first_missing.parent.exists():
                    first_missing = first_missing.parent
                if m.source.is_dir() or not m.source.exists():
                    m.source.mkdir(parents=True, exist_ok=True)
                    target.mkdir(parents=True, exist_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.touch()
                self.node.created_mountpoints.add(first_missing)

    def _release(self) -> None:
        if self.addr is not None:
            # The staging mountpoints (podspec.launch_argv) are plain empty dirs/files on the host.
            shutil.rmtree(podspec.STAGE_ROOT / self.addr.netns, ignore_errors=True)
            self.node.net.release(self.addr)
            self.addr = None


def _signal(p: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, sig)


def _kill_group(p: subprocess.Popen[bytes], grace: float) -> None:
    _signal(p, signal.SIGTERM)
    try:
        p.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal(p, signal.SIGKILL)
