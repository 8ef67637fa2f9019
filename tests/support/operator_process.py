"""The real `localmodel-operator` as a subprocess against the test control plane, under the chart's RBAC.

Not as admin: `grant_operator_rbac` creates a ServiceAccount, a ClusterRole whose rules are read from
the chart's single source (helm/localmodel/files/operator-rules.yaml) and a binding, mints a token with
`kubectl create token` and writes a kubeconfig that authenticates with that token only. The operator's
output goes to a log file that failure messages quote. Used by tests/cluster/test_operator.py (through
the `operator` fixture below) and by bench/operator_bench.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import yaml

from tests.support.net import free_port
from tests.support.polling import poll_until

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = REPO_ROOT / "crds" / "localmodel.yaml"
RULES_FILE = REPO_ROOT / "helm" / "localmodel" / "files" / "operator-rules.yaml"
CLUSTER_RULES_FILE = REPO_ROOT / "helm" / "localmodel" / "files" / "operator-cluster-rules.yaml"
OPERATOR_BIN = Path(sys.executable).parent / "localmodel-operator"
SYSTEM_NAMESPACE = "localmodel-system"
ACCOUNT = "localmodel-operator"


class Kubectl(Protocol):
    def __call__(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]: ...


class OperatorError(RuntimeError):
    pass


def install_crd(kubectl: Kubectl) -> None:
    """Apply the committed CRD and wait until the API serves it."""
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))

    def established() -> bool:
        # Not `kubectl wait`: it fails outright on a CRD whose status has no conditions yet.
        path = "{.status.conditions[?(@.type=='Established')].status}"
        found = kubectl("get", "crd/localmodels.localmodel.dev", "-o", f"jsonpath={path}", check=False)
        return found.stdout.strip() == "True"

    poll_until(established, "the LocalModel CRD to be established", 60)


def operator_rules() -> list[dict[str, Any]]:
    """The chart's ClusterRole for an operator watching every namespace: both rules files."""
    rules: list[dict[str, Any]] = yaml.safe_load(RULES_FILE.read_text())
    cluster_rules: list[dict[str, Any]] = yaml.safe_load(CLUSTER_RULES_FILE.read_text())
    return rules + cluster_rules


def grant_operator_rbac(kubectl: Kubectl, server: str, ca_file: Path, kubeconfig: Path) -> Path:
    """ServiceAccount + ClusterRole (the chart's rules) + binding; writes and returns its kubeconfig."""
    manifests = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYSTEM_NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": ACCOUNT, "namespace": SYSTEM_NAMESPACE},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": ACCOUNT},
            "rules": operator_rules(),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": ACCOUNT},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ACCOUNT},
            "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": SYSTEM_NAMESPACE}],
        },
    ]
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(manifests))
    token = kubectl("create", "token", ACCOUNT, "-n", SYSTEM_NAMESPACE, "--duration=24h").stdout.strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": ACCOUNT, "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "test", "user": ACCOUNT}}],
        "current-context": "operator",
    }
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    kubeconfig.write_text(yaml.safe_dump(config))
    kubeconfig.chmod(0o600)
    return kubeconfig


class OperatorProcess:
    """`localmodel-operator -A` with a given kubeconfig; `start`, `stop`, `kill`, `restart`, `output`."""

    def __init__(
        self,
        kubeconfig: Path,
        workdir: Path,
        config: dict[str, Any] | None = None,
        args: tuple[str, ...] = ("-A",),
    ) -> None:
        self.kubeconfig = kubeconfig
        self.dir = workdir
        self.config = config or {}
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "operator.log"
        self.starts = 0
        self._offset = 0  # where the current run's output begins in the log

    def start(self, timeout: float = 60.0) -> None:
        if self.proc is not None:
            raise OperatorError("already running")
        self.dir.mkdir(parents=True, exist_ok=True)
        config_file = self.dir / "operator-config.yaml"
        config_file.write_text(yaml.safe_dump(self.config))
        port = free_port()
        self.liveness = f"http://127.0.0.1:{port}/healthz"
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "LOCALMODEL_OPERATOR_CONFIG": str(config_file),
            "PYTHONUNBUFFERED": "1",
        }
        argv = [
            str(OPERATOR_BIN),
            *self.args,
            "--liveness",
            self.liveness,
            "--watch-timeout",
            "30",
            "--log-format",
            "json",
        ]
        with self.log.open("ab") as out:
            self._offset = out.tell()
            out.write(f"--- start #{self.starts + 1}: {' '.join(argv)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.starts += 1
        self.wait_for(lambda _: self.alive(), timeout)

    def alive(self) -> bool:
        """kopf answers its liveness endpoint once the start-up activities are done."""
        try:
            with urllib.request.urlopen(self.liveness, timeout=2) as resp:
                return int(resp.status) == 200
        except OSError:
            return False

    def _lines(self) -> list[str]:
        if not self.log.exists():
            return []
        with self.log.open("rb") as f:
            f.seek(self._offset)
            return f.read().decode(errors="replace").splitlines()

    def records(self) -> list[dict[str, Any]]:
        """This run's JSON log records (kopf's and ours); other lines (tracebacks) are skipped."""
        out = []
        for line in self._lines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                out.append(record)
        return out

    def output(self, last: int = 60) -> str:
        """The tail of everything the operator printed, for failure messages."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-last:])

    def wait_for(self, check: Callable[[list[str]], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check(self._lines()):
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise OperatorError(f"the operator exited ({self.proc.returncode}):\n{self.output()}")
            time.sleep(0.2)
        raise OperatorError(f"timed out after {timeout:.0f}s waiting for the operator:\n{self.output()}")

    def stop(self, grace: float = 15.0) -> int:
        """SIGTERM (kopf's graceful shutdown), SIGKILL after `grace`; returns the exit code."""
        if self.proc is None:
            return 0
        proc, self.proc = self.proc, None
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            code = proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            code = proc.wait()
        _signal_group(proc.pid, signal.SIGKILL)
        return code

    def kill(self) -> None:
        """SIGKILL: the operator dies wherever it is, mid-reconcile included."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def peak_rss_kib(pid: int) -> int:
    """The process's high-water resident set (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def running_operator(
    kubectl: Kubectl, server: str, ca_file: Path, workdir: Path, config: dict[str, Any] | None = None
) -> Iterator[OperatorProcess]:
    """CRD, RBAC and a started operator; stopped (and checked for a clean exit) afterwards."""
    install_crd(kubectl)
    kubeconfig = grant_operator_rbac(kubectl, server, ca_file, workdir / "operator.kubeconfig")
    op = OperatorProcess(kubeconfig, workdir, config)
    op.start()
    try:
        yield op
    finally:
        code = op.stop()
        if code not in (0, -signal.SIGTERM):
            raise OperatorError(f"the operator exited with {code}:\n{op.output()}")


def operator_on(
    cluster: Any, workdir: Path, config: dict[str, Any] | None = None
) -> Iterator[OperatorProcess]:
    """`running_operator` on the tests' control plane (a tests.support.fixtures.Cluster)."""
    yield from running_operator(
        cluster.kubectl, cluster.server, cluster.cp.pki_dir / "ca.crt", workdir, config
    )
