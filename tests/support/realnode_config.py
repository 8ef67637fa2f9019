"""The configuration files of the real node (realnode.py): containerd, CNI, kubelet, kube-proxy.

Every setting that differs from a component's default is here with the reason, most of them measured
on the project's machines (/work/shared/reference/real-node.md): a hybrid cgroup v1 layout, root
without CAP_SYS_RESOURCE, no registry reachable but the local one, and other engineers' podman and
process nodes on the same host (so every path, socket, port, bridge and subnet is the node's own).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUNC = "/usr/sbin/runc"
CNI_BIN_DIR = "/usr/lib/cni"
# The process nodes use 10.244.0-7.0/24 and podman 10.88.0.0/16: this subnet clashes with neither.
POD_SUBNET = "10.250.0.0/24"
GATEWAY = "10.250.0.1"


@dataclass(frozen=True)
class NodePaths:
    """Everything the node writes lives under `root` (.cache/node/<name>), so teardown can find it."""

    root: Path

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd" / "state"

    @property
    def socket(self) -> Path:
        return self.root / "containerd.sock"

    @property
    def certs_d(self) -> Path:
        return self.root / "certs.d"

    @property
    def cni_conf(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"


def containerd_toml(paths: NodePaths, sandbox_image: str) -> str:
    cri_images = '[plugins."io.containerd.cri.v1.images"]'
    cri_runtime = '[plugins."io.containerd.cri.v1.runtime"]'
    runc = '[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]'
    return f"""version = 3
root = "{paths.containerd_root}"
state = "{paths.containerd_state}"
# NRI would listen on a fixed host socket (/var/run/nri/nri.sock); the node does not need it.
disabled_plugins = ["io.containerd.nri.v1.nri"]

[grpc]
  address = "{paths.socket}"

{cri_images}
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    # Nothing can be pulled from the internet: the sandbox image is made here (pauseimage.py).
    sandbox = "{sandbox_image}"
  [plugins."io.containerd.cri.v1.images".registry]
    # hosts.toml per registry: the local test registry serves plain HTTP.
    config_path = "{paths.certs_d}"

{cri_runtime}
  # kubelet asks for oom_score_adj -998 for sandboxes; lowering it needs CAP_SYS_RESOURCE, which root
  # lacks here, and without this every sandbox fails ("can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  # Pod network namespaces under our state dir, not /var/run/netns: teardown finds exactly ours.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
  {runc}
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
      # Debian's runc: crun refuses this hybrid cgroup v1 layout.
      BinaryName = "{RUNC}"
      SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{CNI_BIN_DIR}"]
    conf_dir = "{paths.cni_conf}"
    max_conf_num = 1

[plugins."io.containerd.grpc.v1.cri"]
  # kubectl exec/port-forward streams: loopback, a port of the kernel's choosing.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""


def registry_hosts_toml(address: str) -> str:
    """containerd's hosts.toml for a plain-HTTP registry (a user's registry without TLS, as the
    test registry on 127.0.0.1 is)."""
    return f'server = "http://{address}"\n\n[host."http://{address}"]\n  capabilities = ["pull", "resolve"]\n'


def cni_conflist(network: str, bridge: str, paths: NodePaths) -> str:
    conf = {
        "cniVersion": "1.0.0",
        "name": network,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                # Pod traffic leaving the subnet is masqueraded (CNI-* chains named after this network).
                "ipMasq": True,
                # A pod reaching a Service whose endpoint is itself comes back through the bridge.
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET, "gateway": GATEWAY}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(paths.cni_ipam),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    # containerd brings up each pod's `lo` itself (with the loopback plugin from bin_dirs).
    return json.dumps(conf, indent=2)


def kubelet_config(
    paths: NodePaths, port: int, healthz_port: int, ca: Path, overrides: dict[str, Any] | None = None
) -> str:
    """The KubeletConfiguration as JSON (which is YAML), with `overrides` merged over the top level."""
    config: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "containerRuntimeEndpoint": f"unix://{paths.socket}",
        "cgroupDriver": "cgroupfs",
        # 1.36 refuses cgroup v1 unless told; the project's machines have a hybrid v1 layout.
        "failCgroupV1": False,
        "failSwapOn": False,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "podLogsDir": str(paths.pod_logs),
        # The apiserver authenticates with a client certificate from the test CA (logs, exec).
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "AlwaysAllow"},
        # The overlay filesystem's device is not visible to cAdvisor here: no node-allocatable
        # enforcement or ephemeral-storage accounting; evictions only when really full (shared disks).
        "enforceNodeAllocatable": [],
        "localStorageCapacityIsolation": False,
        "evictionHard": {
            "memory.available": "50Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        # No cluster DNS: pods use Service environment variables and IPs; a resolver that fails at
        # once instead of waiting out one that pods cannot reach.
        "resolvConf": str(paths.root / "resolv.conf"),
        "nodeStatusUpdateFrequency": "5s",
    }
    config.update(overrides or {})
    return json.dumps(config, indent=2)


def kube_proxy_yaml(kubeconfig: Path, node_name: str, healthz_port: int, metrics_port: int) -> str:
    return f"""apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {{kubeconfig: {kubeconfig}}}
hostnameOverride: {node_name}
clusterCIDR: {POD_SUBNET}
healthzBindAddress: 127.0.0.1:{healthz_port}
metricsBindAddress: 127.0.0.1:{metrics_port}
# Leave the host's conntrack sysctls alone (shared host; setting them needs privileges we may lack).
conntrack: {{maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}}
"""
