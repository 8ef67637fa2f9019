"""A real Kubernetes node for the test control plane: containerd + runc + CNI bridge, kubelet, kube-proxy.

Why: the process node (processnode.py) ignores images, users, filesystems, probes and restart
policies; this node runs the product's container images as a cluster does. kubelet and kube-proxy are
the control plane's Kubernetes version, containerd is built from Go modules (scripts/build-node.sh
with NODE=1), runc and the CNI plugins are Debian's. The settings that this machine kind needs are in
realnode_config.py; teardown and the leak check in realnode_cleanup.py.

Use `with RealNode(control_plane) as node:` where the control plane was started with
`bind_address="0.0.0.0", advertise_address=GATEWAY` (`control_plane_for_real_node()`): pods reach
the apiserver through the `kubernetes` Service (10.96.0.1:443), which kube-proxy DNATs to the
advertised address, the node's bridge. A component that fails to start raises `RealNodeError` with
its name and the end of its log, after everything started so far is torn down.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support import pki, realnode_cleanup
from tests.support.controlplane import BIN_DIR, CACHE, ControlPlane
from tests.support.net import free_port
from tests.support.pauseimage import PAUSE_IMAGE, write_oci_archive
from tests.support.processes import Component, StartStop, log_tail, signal_group, wait_while_running
from tests.support.realnode_config import (
    CNI_BIN_DIR,
    GATEWAY,
    RUNC,
    NodePaths,
    cni_conflist,
    containerd_toml,
    kube_proxy_yaml,
    kubelet_config,
    registry_hosts_toml,
)

NODE_ROOT: Path = CACHE / "node"
NODE_BINARIES = ("containerd", "ctr", "containerd-shim-runc-v2", "kubelet", "kube-proxy", "pause")
# The same fake accelerators the process node advertises, so device tests can schedule here too.
FAKE_DEVICES = {"nvidia.com/gpu": "2", "gpu.intel.com/i915": "1"}
BRIDGE = "lmnode0"


class RealNodeError(RuntimeError):
    pass


def control_plane_for_real_node() -> ControlPlane:
    """A control plane whose apiserver pods of the real node can reach (see the module docstring)."""
    return ControlPlane(bind_address="0.0.0.0", advertise_address=GATEWAY)


def missing_prerequisites() -> list[str]:
    missing = [
        f"{BIN_DIR / b} (make node-bins)" for b in NODE_BINARIES if not os.access(BIN_DIR / b, os.X_OK)
    ]
    for path, package in ((RUNC, "runc"), (f"{CNI_BIN_DIR}/bridge", "containernetworking-plugins")):
        if not os.access(path, os.X_OK):
            missing.append(f"{path} (apt-get install {package})")
    if shutil.which("iptables") is None:
        missing.append("iptables (apt-get install iptables)")
    if os.geteuid() != 0:
        missing.append("root")
    return missing


@dataclass
class RealNode(StartStop):
    cp: ControlPlane
    registries: tuple[str, ...] = ()  # plain-HTTP registries to pull from, as host:port
    name: str = field(default_factory=lambda: f"lmnode-{uuid.uuid4().hex[:6]}")
    keep_dir: bool = False  # keep logs and configuration after stop, for debugging
    kubelet_overrides: dict[str, Any] = field(default_factory=dict)  # KubeletConfiguration fields

    def __post_init__(self) -> None:
        self.paths = NodePaths(NODE_ROOT / self.name)
        self.network = f"localmodel-{self.name}"
        self.ports: dict[str, int] = {}
        self._components: list[Component] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 180.0) -> None:
        missing = missing_prerequisites()
        if missing:
            raise RealNodeError("the real node needs: " + "; ".join(missing))
        deadline = time.monotonic() + timeout
        try:
            self._prepare()
            self._spawn(self._containerd())
            self._wait(lambda: self.ctr("version").returncode == 0, "containerd", "its socket", deadline)
            archive = write_oci_archive(BIN_DIR / "pause", self.paths.root / "pause.tar")
            imported = self.ctr("images", "import", str(archive))
            if imported.returncode != 0:
                raise RealNodeError(f"containerd: importing the pause image failed: {imported.stderr}")
            self._spawn(self._kubelet())
            self._wait(self._node_ready, "kubelet", f"Node {self.name} to be Ready", deadline)
            self._advertise_devices()
            self._wait(self._devices_allocatable, "kubelet", "the fake accelerators in allocatable", deadline)
            self._spawn(self._kube_proxy())
            self._wait(self._kubernetes_service_answers, "kube-proxy", "10.96.0.1:443 (ClusterIP)", deadline)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Drain through the kubelet while it runs, then stop everything and remove what is left."""
        by_name = {c.name: c for c in self._components}
        if "kube-proxy" in by_name:
            by_name["kube-proxy"].stop(grace=15.0)
        # Cleanup mode removes kube-proxy's rules and exits; it needs no configuration.
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(
                [str(BIN_DIR / "kube-proxy"), "--cleanup"], capture_output=True, timeout=60, check=False
            )
        if "kubelet" in by_name and by_name["kubelet"].proc and by_name["kubelet"].proc.poll() is None:
            self._drain()
        if "kubelet" in by_name:
            by_name["kubelet"].stop(grace=15.0)
            # Deregister: a stale Node stays "Ready" for a while and the scheduler would bind pods to it.
            self.cp.kubectl("delete", "node", self.name, "--wait=false", check=False, timeout=30)
        if (
            "containerd" in by_name
            and by_name["containerd"].proc
            and by_name["containerd"].proc.poll() is None
        ):
            self._kill_tasks()
        if "containerd" in by_name:
            by_name["containerd"].stop(grace=15.0)
        self._components.clear()
        realnode_cleanup.kill_processes(
            realnode_cleanup.node_processes(self.paths.root, self.paths.containerd_state)
        )
        realnode_cleanup.unmount_all(self.paths.root)
        realnode_cleanup.delete_cni_rules(self.network)
        realnode_cleanup.delete_kube_chains()
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
        if not self.keep_dir:
            shutil.rmtree(self.paths.root, ignore_errors=True)

    def kill(self, component: str) -> None:
        """SIGKILL one component's process group, as a crash would (for tests of teardown)."""
        comp = next(c for c in self._components if c.name == component)
        if comp.proc is not None:
            signal_group(comp.proc.pid, signal.SIGKILL)
            comp.proc.wait(timeout=30)

    def leftovers(self) -> list[str]:
        return realnode_cleanup.leftovers(self.paths.root, self.paths.containerd_state, BRIDGE, self.network)

    def ctr(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        argv = [str(BIN_DIR / "ctr"), "--address", str(self.paths.socket), "--namespace", "k8s.io", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def log(self, component: str, lines: int = 40) -> str:
        return log_tail(self.paths.logs / f"{component}.log", lines)

    # ------------------------------------------------------------------ setup
    def _prepare(self) -> None:
        p = self.paths
        if realnode_cleanup.link_exists(BRIDGE):
            raise RealNodeError(f"bridge {BRIDGE} exists: another real node runs here, or one was left")
        shutil.rmtree(p.root, ignore_errors=True)
        for d in (p.logs, p.pki, p.cni_conf, p.cni_ipam, p.certs_d, p.kubelet_root, p.pod_logs):
            d.mkdir(parents=True)
        for port in ("kubelet", "kubelet_healthz", "proxy_healthz", "proxy_metrics"):
            self.ports[port] = free_port()
        # The bridge (with the gateway address) before anything runs: the apiserver advertises that
        # address, and the test's HTTP servers listen on it, before the first pod would create it.
        for argv in (
            ["ip", "link", "add", BRIDGE, "type", "bridge"],
            ["ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE],
            ["ip", "link", "set", BRIDGE, "up"],
        ):
            res = subprocess.run(argv, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                raise RealNodeError(f"CNI bridge: {' '.join(argv)}: {res.stderr.strip()}")
        ca = pki.CertPair(self.cp.pki_dir / "ca.crt", self.cp.pki_dir / "ca.key")
        # The identities the bootstrap RBAC policy and the Node authorizer expect.
        pki.issue(ca, p.pki, "kubelet", f"system:node:{self.name}", organization="system:nodes")
        pki.issue(ca, p.pki, "kube-proxy", "system:kube-proxy")
        for user in ("kubelet", "kube-proxy"):
            (p.root / f"{user}.kubeconfig").write_text(self._kubeconfig(user))
        (p.root / "config.toml").write_text(containerd_toml(p, PAUSE_IMAGE))
        for address in self.registries:
            (p.certs_d / address).mkdir(parents=True)
            (p.certs_d / address / "hosts.toml").write_text(registry_hosts_toml(address))
        (p.cni_conf / "10-localmodel.conflist").write_text(cni_conflist(self.network, BRIDGE, p))
        (p.root / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        (p.root / "kubelet.yaml").write_text(
            kubelet_config(
                p,
                self.ports["kubelet"],
                self.ports["kubelet_healthz"],
                self.cp.pki_dir / "ca.crt",
                self.kubelet_overrides,
            )
        )
        (p.root / "kube-proxy.yaml").write_text(
            kube_proxy_yaml(
                p.root / "kube-proxy.kubeconfig",
                self.name,
                self.ports["proxy_healthz"],
                self.ports["proxy_metrics"],
            )
        )

    def _kubeconfig(self, user: str) -> str:
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "test",
                        "cluster": {
                            "server": self.cp.server,
                            "certificate-authority": str(self.cp.pki_dir / "ca.crt"),
                        },
                    }
                ],
                "users": [
                    {
                        "name": user,
                        "user": {
                            "client-certificate": str(self.paths.pki / f"{user}.crt"),
                            "client-key": str(self.paths.pki / f"{user}.key"),
                        },
                    }
                ],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": user}}],
                "current-context": "test",
            }
        )

    def _containerd(self) -> Component:
        return Component(
            "containerd",
            [str(BIN_DIR / "containerd"), "--config", str(self.paths.root / "config.toml")],
            self.paths.logs / "containerd.log",
        )

    def _kubelet(self) -> Component:
        return Component(
            "kubelet",
            [
                str(BIN_DIR / "kubelet"),
                f"--config={self.paths.root / 'kubelet.yaml'}",
                f"--kubeconfig={self.paths.root / 'kubelet.kubeconfig'}",
                f"--root-dir={self.paths.kubelet_root}",
                f"--hostname-override={self.name}",
                f"--node-ip={GATEWAY}",
                "--v=1",
            ],
            self.paths.logs / "kubelet.log",
        )

    def _kube_proxy(self) -> Component:
        return Component(
            "kube-proxy",
            [str(BIN_DIR / "kube-proxy"), f"--config={self.paths.root / 'kube-proxy.yaml'}", "--v=1"],
            self.paths.logs / "kube-proxy.log",
        )

    def _spawn(self, comp: Component) -> None:
        # containerd finds its shim on PATH; the others want iptables, ip, mount from the system.
        env = {
            **os.environ,
            "PATH": f"{BIN_DIR}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        }
        comp.spawn(cwd=self.paths.root, env=env)
        self._components.append(comp)

    def _wait(self, ready: Callable[[], bool], component: str, what: str, deadline: float) -> None:
        if not wait_while_running(self._components, ready, what, deadline, RealNodeError):
            log = self.paths.logs / f"{component}.log"
            raise RealNodeError(
                f"{component}: timed out waiting for {what}; last lines of {log}:\n{log_tail(log, 25)}"
            )

    def _node_ready(self) -> bool:
        res = self.cp.kubectl("get", "node", self.name, "-o", "json", check=False)
        if res.returncode != 0:
            return False
        conditions = json.loads(res.stdout).get("status", {}).get("conditions", [])
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    def _advertise_devices(self) -> None:
        # Extended resources without a device plugin: patched into the Node's status capacity, as
        # Kubernetes documents; the kubelet then keeps them and mirrors them into allocatable.
        patch = json.dumps({"status": {"capacity": FAKE_DEVICES}})
        self.cp.kubectl("patch", "node", self.name, "--subresource=status", "--type=merge", "-p", patch)

    def _devices_allocatable(self) -> bool:
        node = json.loads(self.cp.kubectl("get", "node", self.name, "-o", "json").stdout)
        allocatable = node.get("status", {}).get("allocatable", {})
        return all(allocatable.get(k) == v for k, v in FAKE_DEVICES.items())

    def _kubernetes_service_answers(self) -> bool:
        with httpx.Client(verify=self.cp.ssl_context(), timeout=3) as client:
            return client.get("https://10.96.0.1:443/readyz").status_code == 200

    # ------------------------------------------------------------------ teardown
    def _drain(self, bound: float = 60.0) -> None:
        """Delete the node's pods and let the kubelet tear their sandboxes down through the CRI (which
        releases their IPs and CNI rules) before it stops; bounded, the hard cleanup follows anyway.
        Cordoned first, so that controllers' replacement pods are not bound here meanwhile. A grace
        period of 1 s rather than a forced delete: with forced deletes the kubelet took so long to stop
        the e2e's pods that the drain ran into its bound (module teardown 93 s; 13 s this way)."""
        if self.cp.kubectl("cordon", self.name, check=False, timeout=30).returncode != 0:
            return  # the control plane is gone: nothing to drain through
        selector = f"spec.nodeName={self.name}"
        self.cp.kubectl(
            "delete", "pods", "-A", "--field-selector", selector, "--grace-period=1", "--wait=false",
            check=False, timeout=30,
        )  # fmt: skip
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            # A stopped sandbox has had its network torn down; its exited tasks are removed below.
            if not self._running_tasks():
                return
            time.sleep(0.5)

    def _running_tasks(self) -> list[str]:
        lines = self.ctr("tasks", "ls", timeout=10).stdout.splitlines()[1:]  # TASK PID STATUS
        return [line.split()[0] for line in lines if line.split()[2:3] == ["RUNNING"]]

    def _kill_tasks(self) -> None:
        tasks = self.ctr("tasks", "ls", "-q", timeout=10).stdout.split()
        for task in tasks:
            self.ctr("tasks", "kill", "--all", "--signal", "SIGKILL", task, timeout=10)
        for task in tasks:
            self.ctr("tasks", "delete", "--force", task, timeout=20)
