"""Teardown of the real node (realnode.py) and the check that nothing of it is left on the host.

What a node leaves when its pods are not torn down one by one through the CRI (a killed kubelet, a
failed start): shims and container processes, overlay and tmpfs mounts, network namespaces (with
the pods' veths inside), the CNI bridge, the `CNI-*` masquerade chains and their POSTROUTING jumps,
and kube-proxy's `KUBE-*` chains. Everything is recognised as the node's own by a path under its
directory or by its CNI network name, never by a broad pattern: other engineers' podman containers
and process nodes share this host (podman's CNI chains are named `CNI-*` too).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
from pathlib import Path

IPTABLES_TABLES = ("nat", "filter", "mangle")
IPTABLES = ("iptables", "ip6tables")


def _run(*argv: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def node_processes(root: Path, container_state: Path) -> dict[int, str]:
    """pid -> command line of every process that belongs to the node: the components and shims
    (their command lines name the node's directory or socket) and the containers (their root is a
    rootfs under containerd's state directory)."""
    found: dict[int, str] = {}
    mine = str(root.resolve()).encode()
    state = str(container_state.resolve())
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            root_link = os.readlink(proc / "root")
        except OSError:
            continue
        if mine in cmdline or root_link.startswith(state):
            found[int(proc.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return found


def kill_processes(pids: dict[int, str]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def mounts_under(root: Path) -> list[str]:
    """Mount points under `root`, deepest first (the order they can be unmounted in)."""
    prefix = str(root.resolve())
    points: list[str] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        # Field 5 is the mount point, with spaces and the like octal-escaped.
        point = line.split()[4].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(set(points), key=lambda p: p.count("/"), reverse=True)


def unmount_all(root: Path) -> None:
    # Repeated: kubelet bind-mounts its root onto itself (to make it shared), so unmounting one layer
    # can reveal another at the same point.
    for _ in range(5):
        points = mounts_under(root)
        if not points:
            return
        for point in points:
            if _run("umount", point).returncode != 0:
                _run("umount", "-l", point)


def iptables_lines(table: str, binary: str = "iptables") -> list[str]:
    result = _run(binary, "-t", table, "-S")
    return result.stdout.splitlines() if result.returncode == 0 else []


def cni_rules(network: str) -> list[tuple[str, str]]:
    """(table, rule) for every rule the CNI plugins added for `network`: they carry a comment naming it."""
    marker = f'name: \\"{network}\\"'
    return [
        (table, line)
        for table in IPTABLES_TABLES
        for line in iptables_lines(table)
        if line.startswith("-A ") and marker in line
    ]


def delete_cni_rules(network: str) -> None:
    """Delete the network's rules and the per-pod `CNI-*` chains they jump to (not the shared
    CNI-HOSTPORT-* chains, which podman's containers use too)."""
    chains: set[tuple[str, str]] = set()
    for table, line in cni_rules(network):
        argv = shlex.split(line)
        target = argv[argv.index("-j") + 1] if "-j" in argv else ""
        if target.startswith("CNI-") and not target.startswith("CNI-HOSTPORT-"):
            chains.add((table, target))
        _run("iptables", "-t", table, "-D", *argv[1:])
    for table, chain in chains:
        _run("iptables", "-t", table, "-F", chain)
        _run("iptables", "-t", table, "-X", chain)


def kube_chains() -> list[str]:
    """The `KUBE-*` chains of kube-proxy and of the kubelet (KUBE-FIREWALL, KUBE-KUBELET-CANARY,
    KUBE-IPTABLES-HINT), IPv4 and IPv6; only the real node runs either on these machines."""
    return [
        f"{binary} {table}: {line}"
        for binary in IPTABLES
        for table in IPTABLES_TABLES
        for line in iptables_lines(table, binary)
        if re.match(r"^-N KUBE-", line)
    ]


def delete_kube_chains() -> None:
    """What `kube-proxy --cleanup` leaves: the kubelet's chains, and the built-in chains' jumps to them."""
    for binary in IPTABLES:
        for table in IPTABLES_TABLES:
            lines = iptables_lines(table, binary)
            for line in lines:
                argv = shlex.split(line)
                jumps_to_kube = "-j" in argv and argv[argv.index("-j") + 1].startswith("KUBE-")
                if argv[0] == "-A" and not argv[1].startswith("KUBE-") and jumps_to_kube:
                    _run(binary, "-t", table, "-D", *argv[1:])
            chains = [line.split()[1] for line in lines if re.match(r"^-N KUBE-", line)]
            for chain in chains:
                _run(binary, "-t", table, "-F", chain)
            for chain in chains:
                _run(binary, "-t", table, "-X", chain)


def bridge_ports(bridge: str) -> list[str]:
    result = _run("ip", "-o", "link", "show", "master", bridge)
    return [line.split(":")[1].strip() for line in result.stdout.splitlines() if ":" in line]


def link_exists(name: str) -> bool:
    return _run("ip", "link", "show", name).returncode == 0


def leftovers(root: Path, container_state: Path, bridge: str, network: str) -> list[str]:
    """Everything of the node still on the host; empty after a clean teardown."""
    found = [f"process {pid}: {cmd}" for pid, cmd in node_processes(root, container_state).items()]
    found += [f"mount {point}" for point in mounts_under(root)]
    if link_exists(bridge):
        found.append(f"bridge {bridge} (ports: {', '.join(bridge_ports(bridge)) or 'none'})")
    found += [f"iptables {table}: {rule}" for table, rule in cni_rules(network)]
    found += [f"chain {chain}" for chain in kube_chains()]
    # Pods' network namespaces are bind mounts under containerd's state dir (netns_mounts_under_state_dir),
    # so the mounts above include them; a namespace without its mount and without processes is gone,
    # and the veths inside it with it.
    return found
