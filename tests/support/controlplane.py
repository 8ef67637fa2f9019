"""A real Kubernetes control plane as local processes: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler, built from Go modules by `scripts/build-k8s.sh`.

Why: kind needs Docker, which the project's machines do not run (DESIGN.md, "Testing on a
real control plane without Docker"). Unlike envtest this includes the controller manager
(garbage collection, namespace deletion, Deployments -> ReplicaSets -> Pods, EndpointSlices,
ServiceAccounts and their tokens) and the scheduler, with TLS and RBAC on as in a real cluster.
Pods are run by the test-only process node (tests/support/processnode.py).

`python -m tests.support.controlplane up|down|status` runs one for people (see cluster_cli.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support import pki
from tests.support.net import free_port
from tests.support.podnet import gateway_ips
from tests.support.processes import Component, StartStop, log_tail, signal_group, wait_while_running

REPO_ROOT: Path = Path(__file__).resolve().parents[2]
CACHE: Path = REPO_ROOT / ".cache"
BIN_DIR: Path = CACHE / "bin"
CLUSTER_ROOT: Path = CACHE / "cluster"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
SERVICE_CIDR = "10.96.0.0/16"


class ControlPlaneError(RuntimeError):
    pass


def missing_binaries(bin_dir: Path = BIN_DIR) -> list[str]:
    return [b for b in BINARIES if not os.access(bin_dir / b, os.X_OK)]


@dataclass
class ControlPlane(StartStop):
    """Start with `start()` (or `with ControlPlane() as cp:`); `stop()` leaves nothing behind."""

    name: str = field(default_factory=lambda: f"cp-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    bin_dir: Path = BIN_DIR
    kubeconfig_path: Path | None = None  # default: <instance dir>/kubeconfig
    keep_dir: bool = False  # keep the instance dir (logs, etcd data) after stop, for debugging
    # Where the apiserver listens and what it advertises as the `kubernetes` Service's endpoint. The
    # default (loopback) suits the process node, whose pods reach it through its bridge address. Pods
    # of a real node (realnode.py) reach it through kube-proxy's DNAT of 10.96.0.1:443 to the advertised
    # address, which therefore must be a non-loopback address of this host (the real node's bridge).
    bind_address: str = "127.0.0.1"
    advertise_address: str = "127.0.0.1"

    def __post_init__(self) -> None:
        self.dir = CLUSTER_ROOT / self.name
        self.pki_dir = self.dir / "pki"
        self.kubeconfig = self.kubeconfig_path or self.dir / "kubeconfig"
        self.ports: dict[str, int] = {}
        self._components: list[Component] = []
        self.server = ""

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 120.0) -> None:
        missing = missing_binaries(self.bin_dir)
        if missing:
            raise ControlPlaneError(
                f"control-plane binaries missing from {self.bin_dir}: {', '.join(missing)}; "
                "run `make k8s-bins`"
            )
        deadline = time.monotonic() + timeout
        try:
            self._prepare()
            self._spawn(self._etcd())
            self._wait(lambda: self._etcd_healthy(), "etcd /health", deadline)
            self._spawn(self._apiserver())
            self._wait(lambda: self._get("/readyz") == 200, "kube-apiserver /readyz", deadline)
            self._spawn(self._controller_manager())
            self._spawn(self._scheduler())
            # The serviceaccount controller creates `default` in every namespace: its presence
            # shows that the controller manager is up and authorised.
            sa = "/api/v1/namespaces/default/serviceaccounts/default"
            self._wait(lambda: self._get(sa) == 200, "the default ServiceAccount", deadline)
        except BaseException:
            self.stop()
            raise

    def stop(self, grace: float = 10.0) -> None:
        """Stop the components one by one in reverse start order (SIGTERM to the process group,
        SIGKILL after `grace`). One at a time on purpose: with etcd gone first, the apiserver's
        graceful shutdown hangs on storage timeouts (10 s instead of 1 s)."""
        for comp in reversed(self._components):
            if comp.proc is None:
                continue
            comp.stop(grace)
            # The group may still hold children that outlived the leader.
            signal_group(comp.proc.pid, signal.SIGKILL)
        self._components.clear()
        if not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            if self.kubeconfig_path is not None:
                self.kubeconfig_path.unlink(missing_ok=True)

    def stop_component(self, name: str, grace: float = 10.0) -> None:
        """Stop one component (`etcd`, `kube-apiserver`, ...) as `stop()` would, keeping its data."""
        comp = next(c for c in self._components if c.name == name)
        assert comp.proc is not None, f"{name} is not running"
        comp.stop(grace)
        comp.proc = None

    def start_component(self, name: str, timeout: float = 60.0) -> None:
        """Start a component stopped by `stop_component` again, on the same ports and data, and wait
        until it serves."""
        index = next(i for i, c in enumerate(self._components) if c.name == name)
        comp = self._components.pop(index)
        self._spawn(comp)
        self._components.insert(index, self._components.pop())  # keep the start order for stop()
        ready = {"etcd": self._etcd_healthy, "kube-apiserver": lambda: self._get("/readyz") == 200}
        check = ready.get(name)
        if check is not None:
            self._wait(check, f"{name} after its restart", time.monotonic() + timeout)

    @property
    def pids(self) -> dict[str, int]:
        return {c.name: c.proc.pid for c in self._components if c.proc is not None}

    # ------------------------------------------------------------------ helpers for tests
    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        res = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise ControlPlaneError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
        return res

    def ssl_context(self) -> ssl.SSLContext:
        """Verifies the apiserver and authenticates as cluster admin (system:masters)."""
        ctx = ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))
        ctx.load_cert_chain(str(self.pki_dir / "admin.crt"), str(self.pki_dir / "admin.key"))
        return ctx

    # ------------------------------------------------------------------ internals
    def _prepare(self) -> None:
        reap_stale_instances()
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "logs").mkdir(parents=True)
        (self.dir / "owner.pid").write_text(str(os.getpid()))
        self.pki_dir.mkdir()
        for p in ("etcd_client", "etcd_peer", "apiserver", "kcm", "scheduler"):
            self.ports[p] = free_port()
        self.server = f"https://127.0.0.1:{self.ports['apiserver']}"
        d = self.pki_dir
        ca = pki.make_ca(d)
        pki.issue(
            ca,
            d,
            "apiserver",
            "kube-apiserver",
            server=True,
            dns=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            # Pods reach the apiserver through the process node's bridge address.
            ips=tuple(dict.fromkeys(("127.0.0.1", "10.96.0.1", self.advertise_address, *gateway_ips()))),
        )
        # Each client's identity is what RBAC's bootstrap policy expects for it.
        pki.issue(ca, d, "admin", "localmodel-admin", organization="system:masters")
        pki.issue(ca, d, "kcm", "system:kube-controller-manager")
        pki.issue(ca, d, "scheduler", "system:kube-scheduler")
        pki.make_rsa_keypair(d / "sa.key", d / "sa.pub")
        for user in ("admin", "kcm", "scheduler"):
            path = self.kubeconfig if user == "admin" else self.dir / f"{user}.kubeconfig"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self._kubeconfig_text(user))
            path.chmod(0o600)

    def _kubeconfig_text(self, user: str) -> str:
        d = self.pki_dir
        return (
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: localmodel-test\n  cluster:\n    server: {self.server}\n"
            f"    certificate-authority: {d / 'ca.crt'}\n"
            f"users:\n- name: {user}\n  user:\n    client-certificate: {d / (user + '.crt')}\n"
            f"    client-key: {d / (user + '.key')}\n"
            f"contexts:\n- name: localmodel-test\n  context:\n    cluster: localmodel-test\n"
            f"    user: {user}\n    namespace: default\n"
            "current-context: localmodel-test\n"
        )

    def _etcd(self) -> Component:
        client = f"http://127.0.0.1:{self.ports['etcd_client']}"
        peer = f"http://127.0.0.1:{self.ports['etcd_peer']}"
        return Component(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                f"--name={self.name}",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster={self.name}={peer}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            self.dir / "logs" / "etcd.log",
        )

    def _apiserver(self) -> Component:
        d = self.pki_dir
        return Component(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.ports['etcd_client']}",
                f"--bind-address={self.bind_address}",
                f"--advertise-address={self.advertise_address}",
                f"--secure-port={self.ports['apiserver']}",
                f"--cert-dir={self.dir / 'apiserver-certs'}",
                f"--tls-cert-file={d / 'apiserver.crt'}",
                f"--tls-private-key-file={d / 'apiserver.key'}",
                f"--client-ca-file={d / 'ca.crt'}",
                # For `kubectl logs` and `exec` on a real node: the apiserver calls the kubelet at its
                # InternalIP (not its hostname, which need not resolve) with a client certificate.
                "--kubelet-preferred-address-types=InternalIP",
                f"--kubelet-client-certificate={d / 'admin.crt'}",
                f"--kubelet-client-key={d / 'admin.key'}",
                "--authorization-mode=Node,RBAC",
                "--anonymous-auth=false",
                "--allow-privileged=true",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={d / 'sa.pub'}",
                f"--service-account-signing-key-file={d / 'sa.key'}",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--v=1",
            ],
            self.dir / "logs" / "kube-apiserver.log",
        )

    def _client_flags(self, user: str) -> list[str]:
        """What kube-controller-manager and kube-scheduler both take: `user`'s kubeconfig (for the API,
        and to delegate authentication and authorization to it) and an HTTPS port of their own."""
        kc = self.dir / f"{user}.kubeconfig"
        return [
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports[user]}",
            f"--cert-dir={self.dir / f'{user}-certs'}",
        ]

    def _controller_manager(self) -> Component:
        d = self.pki_dir
        return Component(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                *self._client_flags("kcm"),
                "--controllers=*",
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                f"--service-account-private-key-file={d / 'sa.key'}",
                f"--root-ca-file={d / 'ca.crt'}",
                f"--cluster-signing-cert-file={d / 'ca.crt'}",
                f"--cluster-signing-key-file={d / 'ca.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allocate-node-cidrs=false",
                "--profiling=false",
                "--v=1",
            ],
            self.dir / "logs" / "kube-controller-manager.log",
        )

    def _scheduler(self) -> Component:
        return Component(
            "kube-scheduler",
            [
                str(self.bin_dir / "kube-scheduler"),
                *self._client_flags("scheduler"),
                "--leader-elect=false",
                "--profiling=false",
                "--v=1",
            ],
            self.dir / "logs" / "kube-scheduler.log",
        )

    def _spawn(self, comp: Component) -> None:
        comp.spawn(cwd=self.dir)
        self._components.append(comp)
        (self.dir / "pids.json").write_text(json.dumps(self.pids))

    def _wait(self, ready: Callable[[], bool], what: str, deadline: float) -> None:
        if not wait_while_running(self._components, ready, what, deadline, ControlPlaneError, 0.25):
            logs = "\n".join(f"--- {c.name}\n{log_tail(c.log)}" for c in self._components)
            raise ControlPlaneError(f"timed out waiting for {what}\n{logs}")

    def _etcd_healthy(self) -> bool:
        r = httpx.get(f"http://127.0.0.1:{self.ports['etcd_client']}/health", timeout=2)
        return r.status_code == 200 and '"health":"true"' in r.text.replace(" ", "")

    def _get(self, path: str) -> int:
        with httpx.Client(verify=self.ssl_context(), timeout=5) as client:
            return client.get(self.server + path).status_code


def reap_stale_instances() -> None:
    """Kill what an earlier owner (a test run killed with SIGKILL, say) left running, so that
    leftovers cannot pile up. Only processes still running one of our binaries are touched."""
    for owner_file in CLUSTER_ROOT.glob("*/owner.pid"):
        instance = owner_file.parent
        try:
            owner = int(owner_file.read_text())
            os.kill(owner, 0)
            continue  # its owner is alive: not ours to touch
        except (ValueError, OSError):
            pass
        try:
            pids = json.loads((instance / "pids.json").read_text()).values()
        except (OSError, ValueError):
            pids = []
        for pid in pids:
            try:
                cmdline = Path(f"/proc/{int(pid)}/cmdline").read_bytes()
            except OSError:
                continue
            if str(BIN_DIR).encode() in cmdline:
                signal_group(int(pid), signal.SIGKILL)
        shutil.rmtree(instance, ignore_errors=True)


if __name__ == "__main__":
    from tests.support.cluster_cli import main

    sys.exit(main(sys.argv[1:]))
