"""The "process node": a test-only stand-in for a kubelet that runs pods as local processes.

TEST TOOLING, NOT PRODUCT CODE. It lets the test suite use a real control plane
(tests/support/controlplane.py) without Docker: it registers a Node (with fake GPU capacity
so device requests schedule), keeps its Lease renewed, runs the pods the scheduler binds to it
(podrunner.py: one worker per pod, each pod in its own network namespace from podnet.py), acts
as a trivial PersistentVolume provisioner (a directory per claim), and forwards the bridge
address to the apiserver so in-cluster clients in pods can reach it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from lightkube import Client, KubeConfig
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Node, PersistentVolume, PersistentVolumeClaim, Pod
from lightkube.types import PatchType

from tests.support import podspec
from tests.support.podnet import PodNetwork
from tests.support.podrunner import PodWorker, now_rfc3339
from tests.support.tcpforward import TcpForwarder

JsonDict = dict[str, Any]
APISERVER_POD_PORT = 6443  # pods reach the apiserver at <bridge address>:6443

DEFAULT_CAPACITY = {
    "cpu": "8",
    "memory": "32Gi",
    "pods": "110",
    "ephemeral-storage": "100Gi",
    "nvidia.com/gpu": "2",
    "gpu.intel.com/i915": "1",
}


class ProcessNode:
    def __init__(
        self,
        kubeconfig: Path,
        apiserver_port: int,
        *,
        name: str = "process-node",
        workdir: Path,
        images: list[podspec.ImageRule] | None = None,
        capacity: dict[str, str] | None = None,
        backoff_base: float = 2.0,
        backoff_cap: float = 30.0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.dir = workdir
        self.pvc_root = workdir / "pvc"
        self.images = images if images is not None else podspec.default_image_map()
        self.capacity = capacity or dict(DEFAULT_CAPACITY)
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self._log = log or (lambda msg: print(f"process-node: {msg}", file=sys.stderr))
        self.client = Client(KubeConfig.from_file(kubeconfig), field_manager="process-node")
        self._apiserver_port = apiserver_port
        self.workers: dict[str, PodWorker] = {}
        # Host paths created as mountpoints for pods (see PodWorker._ensure_mountpoints).
        self.created_mountpoints: set[Path] = set()
        self.mountpoint_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.net: PodNetwork
        self.forwarder: TcpForwarder | None = None
        self.host_ip = ""
        self._since = now_rfc3339()

    def log(self, msg: str) -> None:
        self._log(msg)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.net = PodNetwork()
        self.host_ip = self.net.gateway
        try:
            self.forwarder = TcpForwarder(
                (self.host_ip, APISERVER_POD_PORT), ("127.0.0.1", self._apiserver_port)
            )
            self._register()
            self._thread = threading.Thread(target=self._loop, name=f"node-{self.name}", daemon=True)
            self._thread.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for w in self.workers.values():
            w.shutdown()
        for w in self.workers.values():
            w.join(timeout=30)
        self.workers.clear()
        for path in self.created_mountpoints:  # every pod is gone: nothing is mounted on them
            _remove_empty_tree(path)
        self.created_mountpoints.clear()
        with contextlib.suppress(OSError):  # shared by all nodes: only if it is empty now
            podspec.STAGE_ROOT.rmdir()
        if self.forwarder is not None:
            self.forwarder.close()
        if hasattr(self, "net"):
            self.net.close()
        with contextlib.suppress(Exception):  # the control plane may already be gone
            self.client.delete(Node, self.name)
        self.client.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def base_env(self, pod: JsonDict) -> dict[str, str]:
        """What every container starts with, like the kubelet's service environment; the tests'
        PYTHONPATH too, so that pods run the code under test (a worktree's, not the venv's install)."""
        python_path = {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}
        return {
            **python_path,
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "HOSTNAME": pod["metadata"]["name"],
            "KUBERNETES_SERVICE_HOST": self.host_ip,
            "KUBERNETES_SERVICE_PORT": str(APISERVER_POD_PORT),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(APISERVER_POD_PORT),
        }

    # ------------------------------------------------------------------ node object
    def _node_status(self) -> JsonDict:
        now = now_rfc3339()

        def cond(kind: str, status: str, reason: str) -> JsonDict:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": reason,
                "lastHeartbeatTime": now,
                "lastTransitionTime": self._since,
            }

        return {
            "capacity": self.capacity,
            "allocatable": self.capacity,
            "conditions": [
                cond("Ready", "True", "KubeletReady"),
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": self.host_ip},
                {"type": "Hostname", "address": self.name},
            ],
            "nodeInfo": {
                "kubeletVersion": "v0.0.0-process-node",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "containerRuntimeVersion": "process://0",
                "osImage": "process node",
                "kernelVersion": os.uname().release,
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        }

    def _register(self) -> None:
        self._since = now_rfc3339()
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "localmodel.test/process-node": "true",
        }
        node = from_dict(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": self.name, "labels": labels},
                "spec": {},
            }
        )
        try:
            self.client.create(node)
        except ApiError as e:
            if e.status.code != 409:
                raise
        self._heartbeat()

    def _heartbeat(self) -> None:
        self.client.patch(Node.Status, self.name, {"status": self._node_status()}, patch_type=PatchType.MERGE)
        renew = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": self.name, "leaseDurationSeconds": 40, "renewTime": renew},
        }
        try:
            self.client.patch(
                Lease,
                self.name,
                {"spec": lease["spec"]},
                namespace="kube-node-lease",
                patch_type=PatchType.MERGE,
            )
        except ApiError as e:
            if e.status.code != 404:
                raise
            self.client.create(cast(Lease, Lease.from_dict(lease)), namespace="kube-node-lease")

    # ------------------------------------------------------------------ main loop
    def _loop(self) -> None:
        next_heartbeat = time.monotonic() + 10
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_heartbeat:
                    self._heartbeat()
                    next_heartbeat = time.monotonic() + 10
                self._sync_pods()
                self._provision_volumes()
            except Exception as e:  # a hiccup of the apiserver must not kill the node
                if not self._stop.is_set():
                    self.log(f"sync failed: {e!r}")
            self._stop.wait(0.5)

    def _sync_pods(self) -> None:
        seen: set[str] = set()
        for obj in self.client.list(Pod, namespace="*", fields={"spec.nodeName": self.name}):
            pod = obj.to_dict()
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            worker = self.workers.get(uid)
            if worker is not None:
                worker.update(pod)
            elif (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                if pod["metadata"].get("deletionTimestamp"):  # nothing runs: finish the deletion
                    self._force_delete(pod)
            else:
                worker = PodWorker(self, pod)
                self.workers[uid] = worker
                worker.start()
        for uid, worker in list(self.workers.items()):
            if worker.finished.is_set():
                del self.workers[uid]
            elif uid not in seen:  # removed behind our back (force delete): stop its processes
                worker.shutdown()

    def _force_delete(self, pod: JsonDict) -> None:
        with contextlib.suppress(ApiError):
            self.client.delete(
                Pod, pod["metadata"]["name"], namespace=pod["metadata"]["namespace"], grace_period=0
            )

    def _provision_volumes(self) -> None:
        """Bind every pending claim to a new PV (a directory on this node) so that pods using
        PVCs schedule; the PV controller in the controller manager completes the binding."""
        for obj in self.client.list(PersistentVolumeClaim, namespace="*"):
            pvc = obj.to_dict()
            if (pvc.get("status") or {}).get("phase") != "Pending" or pvc["spec"].get("volumeName"):
                continue
            meta = pvc["metadata"]
            path = self.pvc_root / meta["namespace"] / meta["name"]
            path.mkdir(parents=True, exist_ok=True)
            storage = ((pvc["spec"].get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
            pv = {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": f"pvc-{meta['uid']}"},
                "spec": {
                    "capacity": {"storage": storage},
                    "accessModes": pvc["spec"].get("accessModes") or ["ReadWriteOnce"],
                    "storageClassName": pvc["spec"].get("storageClassName") or "",
                    "persistentVolumeReclaimPolicy": "Delete",
                    "hostPath": {"path": str(path)},
                    "claimRef": {
                        "apiVersion": "v1",
                        "kind": "PersistentVolumeClaim",
                        "namespace": meta["namespace"],
                        "name": meta["name"],
                        "uid": meta["uid"],
                    },
                },
            }
            try:
                self.client.create(cast(PersistentVolume, PersistentVolume.from_dict(pv)))
            except ApiError as e:
                if e.status.code != 409:
                    raise


def _remove_empty_tree(path: Path) -> None:
    """rmdir bottom-up; anything non-empty (data a process wrote) stays."""
    if path.is_file() and path.stat().st_size == 0:
        path.unlink(missing_ok=True)
        return
    if not path.is_dir():
        return
    for sub in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if sub.is_dir():
            with contextlib.suppress(OSError):
                sub.rmdir()
    with contextlib.suppress(OSError):
        path.rmdir()
