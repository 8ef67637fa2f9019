"""Pod networking for the process node: one network namespace per pod on a host bridge.

Why a netns per pod: two pods of one Deployment both listen on the same port (8080), as in a
real cluster, so each needs its own address and port space. Every pod gets a veth pair whose
host end sits on a bridge `lmbr<N>` (10.244.N.1/24); the pod end gets 10.244.N.<k>. The host
reaches every pod IP directly (and the pods reach the host's bridge address), which is all the
tests and the router need. Needs root and `ip` (Debian package `iproute2`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

_SUBNET_PREFIX = "10.244"
_MAX_NETWORKS = 8  # how many process nodes may coexist on one machine (the apiserver cert lists them)


class PodNetError(RuntimeError):
    pass


def gateway_ips() -> list[str]:
    """Every bridge address a process node may use (for the apiserver's serving cert)."""
    return [f"{_SUBNET_PREFIX}.{n}.1" for n in range(_MAX_NETWORKS)]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise PodNetError(f"ip {' '.join(args)}: {res.stderr.strip()}")
    return res


def check_prerequisites() -> None:
    if os.geteuid() != 0:
        raise PodNetError("the process node needs root (network and mount namespaces, bind mounts)")
    if shutil.which("ip") is None:
        raise PodNetError("the process node needs `ip`: apt-get install -y iproute2")
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        raise PodNetError("the process node needs `unshare` and `nsenter` (Debian package util-linux)")


@dataclass(frozen=True)
class PodAddress:
    netns: str
    ip: str
    host_veth: str


class PodNetwork:
    """A bridge plus an allocator of per-pod namespaces; `close()` removes all of it."""

    def __init__(self) -> None:
        check_prerequisites()
        self._lock = threading.Lock()
        self._used: dict[int, PodAddress] = {}
        self.index = self._claim_bridge()
        self.bridge = f"lmbr{self.index}"
        self.gateway = f"{_SUBNET_PREFIX}.{self.index}.1"
        self.cidr = f"{_SUBNET_PREFIX}.{self.index}.0/24"

    def _claim_bridge(self) -> int:
        # `ip link add` is atomic: the first free index wins even against a concurrent node.
        for n in range(_MAX_NETWORKS):
            if _ip("link", "add", f"lmbr{n}", "type", "bridge", check=False).returncode == 0:
                _ip("addr", "add", f"{_SUBNET_PREFIX}.{n}.1/24", "dev", f"lmbr{n}")
                _ip("link", "set", f"lmbr{n}", "up")
                return n
        raise PodNetError(f"all {_MAX_NETWORKS} pod bridges lmbr0..lmbr{_MAX_NETWORKS - 1} are in use")

    def allocate(self, hostname: str) -> PodAddress:
        with self._lock:
            host = next(h for h in range(2, 255) if h not in self._used)
            addr = PodAddress(
                f"lm{self.index}-{host}", f"{_SUBNET_PREFIX}.{self.index}.{host}", f"lmv{self.index}-{host}"
            )
            self._used[host] = addr
        try:
            self._cleanup(addr)  # leftovers of a crashed earlier run
            peer = f"lmp{self.index}-{host}"
            _ip("netns", "add", addr.netns)
            _ip("link", "add", addr.host_veth, "type", "veth", "peer", "name", peer)
            _ip("link", "set", peer, "netns", addr.netns)
            _ip("link", "set", addr.host_veth, "master", self.bridge)
            _ip("link", "set", addr.host_veth, "up")
            _ip("-n", addr.netns, "link", "set", "lo", "up")
            _ip("-n", addr.netns, "link", "set", peer, "name", "eth0")
            _ip("-n", addr.netns, "addr", "add", f"{addr.ip}/24", "dev", "eth0")
            _ip("-n", addr.netns, "link", "set", "eth0", "up")
            _ip("-n", addr.netns, "route", "add", "default", "via", self.gateway)
            _write_etc(addr, hostname)
        except BaseException:
            self.release(addr)
            raise
        return addr

    def release(self, addr: PodAddress) -> None:
        self._cleanup(addr)
        with self._lock:
            self._used.pop(int(addr.ip.rsplit(".", 1)[1]), None)

    @staticmethod
    def _cleanup(addr: PodAddress) -> None:
        _ip("link", "del", addr.host_veth, check=False)
        _ip("netns", "del", addr.netns, check=False)
        shutil.rmtree(ETC_NETNS / addr.netns, ignore_errors=True)

    def close(self) -> None:
        for addr in list(self._used.values()):
            self.release(addr)
        _ip("link", "del", self.bridge, check=False)
        with contextlib.suppress(OSError):  # shared with other nodes: only if empty now
            ETC_NETNS.rmdir()


ETC_NETNS = Path("/etc/netns")


def _write_etc(addr: PodAddress, hostname: str) -> None:
    """`ip netns exec` bind-mounts /etc/netns/<ns>/* over /etc: give each pod a kubelet-like
    /etc/hosts, and a resolver that fails at once. Without it, any lookup (Python's
    HTTPServer does one at bind time) waits out the host's resolver, unreachable from a pod
    network with no route out: 10 s and more."""
    etc = ETC_NETNS / addr.netns
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "hosts").write_text(
        f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{addr.ip}\t{hostname}\n"
    )
    (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")


def netns_exists(name: str) -> bool:
    return Path("/var/run/netns", name).exists()
