"""The test control plane and the process node behave like a real cluster where it matters to
localmodel: RBAC, Deployments -> ready pods with their own IPs, EndpointSlices, restarts,
init containers, volumes, env, deletion, GPU scheduling, and a clean teardown."""

from __future__ import annotations

import os
import socket
import ssl
from typing import Any

import httpx
import pytest

from tests.support.controlplane import ControlPlane
from tests.support.fixtures import Cluster
from tests.support.podnet import netns_exists
from tests.support.processes import process_alive
from tests.support.processnode import ProcessNode

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]
JsonDict = dict[str, Any]

WEB = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: web
        image: localmodel.test/httpserver:1
        args: ["8080"]
        ports: [{containerPort: 8080, name: http}]
        readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"""


def _ready_pods(cluster: Cluster, ns: str, **labels: str) -> list[JsonDict] | None:
    pods: list[JsonDict] = cluster.get("pods", namespace=ns, **labels)["items"]
    ready = [
        p
        for p in pods
        if any(
            c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", [])
        )
    ]
    return ready if pods and len(ready) == len(pods) else None


def _container_status(cluster: Cluster, ns: str, pod: str) -> JsonDict | None:
    statuses = cluster.get("pod", pod, ns).get("status", {}).get("containerStatuses") or []
    return statuses[0] if statuses else None


def _pid(pod: JsonDict) -> int:
    return int(pod["status"]["containerStatuses"][0]["containerID"].removeprefix("process://"))


def test_rbac_forbids_a_service_account_without_rights(control_plane: Cluster, namespace: str) -> None:
    control_plane.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    token = control_plane.kubectl("create", "token", "nobody", "-n", namespace).stdout.strip()
    ctx = ssl.create_default_context(cafile=str(control_plane.cp.pki_dir / "ca.crt"))
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(verify=ctx, headers=headers, timeout=10) as client:
        # The token authenticates (not 401) but RBAC grants nothing (403).
        r = client.get(f"{control_plane.server}/api/v1/namespaces/{namespace}/pods")
        assert r.status_code == 403, r.text
        assert client.get(f"{control_plane.server}/version").status_code == 200  # discovery is public


def test_deployment_pods_get_own_ips_and_ready_endpoints(control_plane: Cluster, namespace: str) -> None:
    control_plane.apply(WEB, namespace)
    pods = control_plane.wait(lambda: _ready_pods(control_plane, namespace, app="web"), what="2 ready pods")
    assert len(pods) == 2
    ips = {p["status"]["podIP"] for p in pods}
    assert len(ips) == 2, f"pods share an IP: {ips}"
    for pod in pods:  # both listen on 8080, each at its own address, reachable from the host
        r = httpx.get(f"http://{pod['status']['podIP']}:8080/", timeout=5)
        assert r.json()["pod"] == pod["metadata"]["name"]

    def ready_endpoints() -> set[str] | None:
        slices = control_plane.get(
            "endpointslices", namespace=namespace, **{"kubernetes.io/service-name": "web"}
        )
        addrs = {
            a
            for s in slices["items"]
            for ep in s.get("endpoints") or []
            if ep.get("conditions", {}).get("ready")
            for a in ep["addresses"]
        }
        return addrs if addrs == ips else None

    control_plane.wait(ready_endpoints, what="EndpointSlice with both pods ready")


def test_crashing_container_backs_off(control_plane: Cluster, namespace: str) -> None:
    control_plane.apply(
        """
apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  containers:
  - {name: main, image: localmodel.test/podprog, command: [podprog, exit, "3"]}
""",
        namespace,
    )

    def crash_looping() -> JsonDict | None:
        s = _container_status(control_plane, namespace, "crasher")
        reason = (s or {}).get("state", {}).get("waiting", {}).get("reason")
        return s if s and reason == "CrashLoopBackOff" and s["restartCount"] > 0 else None

    status = control_plane.wait(crash_looping, what="CrashLoopBackOff")
    assert status["lastState"]["terminated"]["exitCode"] == 3


def test_init_containers_volumes_and_env(control_plane: Cluster, namespace: str) -> None:
    control_plane.kubectl(
        "create", "configmap", "cfg", "-n", namespace, "--from-literal=config.yaml=models: []\n"
    )
    control_plane.kubectl(
        "create", "secret", "generic", "sec", "-n", namespace, "--from-literal=token=s3cret"
    )
    control_plane.apply(
        """
apiVersion: v1
kind: Pod
metadata: {name: app}
spec:
  initContainers:
  - {name: first, image: localmodel.test/podprog, command: [podprog, write, /data/order, first],
     volumeMounts: [{name: work, mountPath: /data}]}
  - {name: second, image: localmodel.test/podprog, command: [podprog, write, /data/second, done],
     volumeMounts: [{name: work, mountPath: /data}]}
  containers:
  - name: main
    image: localmodel.test/httpserver
    args: ["8080"]
    env:
    - {name: API_TOKEN, valueFrom: {secretKeyRef: {name: sec, key: token}}}
    - {name: CONFIG_TEXT, valueFrom: {configMapKeyRef: {name: cfg, key: config.yaml}}}
    - {name: MY_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: MY_NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: GREETING, value: "hi $(MY_NS)"}
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
    volumeMounts:
    - {name: work, mountPath: /data}
    - {name: cfg, mountPath: /etc/localmodel-test, readOnly: true}
  volumes:
  - {name: work, emptyDir: {}}
  - {name: cfg, configMap: {name: cfg}}
""",
        namespace,
    )
    (pod,) = control_plane.wait(lambda: _ready_pods(control_plane, namespace), what="pod app ready")
    ip = pod["status"]["podIP"]
    files = {
        p: httpx.get(f"http://{ip}:8080/file", params={"path": p}, timeout=5)
        for p in ("/etc/localmodel-test/config.yaml", "/data/order", "/data/second")
    }
    assert files["/etc/localmodel-test/config.yaml"].text == "models: []\n"
    assert files["/data/order"].text == "first" and files["/data/second"].text == "done"
    assert not os.path.exists("/etc/localmodel-test/config.yaml"), "the ConfigMap leaked onto the host"
    inits = pod["status"]["initContainerStatuses"]
    assert [s["state"]["terminated"]["reason"] for s in inits] == ["Completed", "Completed"]
    env = httpx.get(f"http://{ip}:8080/", timeout=5).json()["env"]
    assert env["API_TOKEN"] == "s3cret" and env["CONFIG_TEXT"] == "models: []\n"
    assert env["MY_IP"] == ip and env["GREETING"] == f"hi {namespace}"
    assert httpx.get(f"http://{ip}:8080/", timeout=5).json()["hostname"] == "app"
    # The ServiceAccount token is projected where in-cluster clients look for it.
    sa = httpx.get(
        f"http://{ip}:8080/file", params={"path": "/var/run/secrets/kubernetes.io/serviceaccount/namespace"}
    )
    assert sa.text == namespace


def test_unknown_image_and_gpu_scheduling(control_plane: Cluster, namespace: str) -> None:
    control_plane.apply(
        """
apiVersion: v1
kind: Pod
metadata: {name: gpu-one}
spec:
  containers:
  - {name: m, image: registry.example/not-mapped:1, resources: {limits: {nvidia.com/gpu: 1}}}
---
apiVersion: v1
kind: Pod
metadata: {name: gpu-three}
spec:
  containers:
  - {name: m, image: localmodel.test/podprog, resources: {limits: {nvidia.com/gpu: 3}}}
""",
        namespace,
    )

    def pulling() -> JsonDict | None:
        s = _container_status(control_plane, namespace, "gpu-one")
        return (
            s if (s or {}).get("state", {}).get("waiting", {}).get("reason") == "ImagePullBackOff" else None
        )

    control_plane.wait(pulling, what="ImagePullBackOff on the fake-GPU pod")

    def unschedulable() -> JsonDict | None:
        conds = control_plane.get("pod", "gpu-three", namespace).get("status", {}).get("conditions") or []
        return next(
            (c for c in conds if c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable"), None
        )

    cond = control_plane.wait(unschedulable, what="gpu-three Unschedulable")
    assert "nvidia.com/gpu" in cond["message"]
    assert control_plane.get("pod", "gpu-three", namespace)["status"]["phase"] == "Pending"


def test_deleting_the_deployment_stops_its_processes(control_plane: Cluster, namespace: str) -> None:
    control_plane.apply(WEB, namespace)
    pods = control_plane.wait(lambda: _ready_pods(control_plane, namespace, app="web"), what="2 ready pods")
    pids = [_pid(p) for p in pods]
    ips = [p["status"]["podIP"] for p in pods]
    assert all(process_alive(pid) for pid in pids)
    control_plane.kubectl("delete", "deployment", "web", "-n", namespace)
    control_plane.wait(lambda: not control_plane.get("pods", namespace=namespace)["items"], what="pods gone")
    assert not any(process_alive(pid) for pid in pids)
    for ip in ips:
        with pytest.raises(OSError):
            socket.create_connection((ip, 8080), timeout=1).close()


def _listening_ports() -> set[int]:
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":  # LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_teardown_leaves_no_process_port_or_namespace(control_plane: Cluster) -> None:
    """A second, private cluster: start it, run a pod, stop it, and look for leftovers."""
    cp = ControlPlane()
    with cp:
        node = ProcessNode(cp.kubeconfig, cp.ports["apiserver"], name="node-b", workdir=cp.dir / "node")
        node.start()
        try:
            cluster = Cluster(cp, node)
            cluster.apply(WEB, "default")
            pods = cluster.wait(
                lambda: _ready_pods(cluster, "default", app="web"), what="pods on 2nd cluster"
            )
            pids = list(cp.pids.values()) + [_pid(p) for p in pods]
            netns = [f"lm{node.net.index}-{p['status']['podIP'].rsplit('.', 1)[1]}" for p in pods]
            bridge = node.net.bridge
        finally:
            node.stop()
    assert not any(process_alive(pid) for pid in pids)
    assert not set(cp.ports.values()) & _listening_ports()
    assert not any(netns_exists(n) for n in netns)
    assert not os.path.exists(f"/sys/class/net/{bridge}")
    assert not cp.dir.exists()


def test_pods_reach_the_apiserver_in_cluster(control_plane: Cluster, namespace: str) -> None:
    """KUBERNETES_SERVICE_HOST/PORT, the projected token and CA work from inside a pod."""
    control_plane.apply(
        """
apiVersion: v1
kind: Pod
metadata: {name: incluster}
spec:
  restartPolicy: Never
  containers:
  - {name: m, image: localmodel.test/podprog, command: [podprog, apicheck]}
""",
        namespace,
    )

    def finished() -> str | None:
        phase = control_plane.get("pod", "incluster", namespace).get("status", {}).get("phase")
        return str(phase) if phase in ("Succeeded", "Failed") else None

    assert control_plane.wait(finished, what="the in-cluster check to finish") == "Succeeded"
    assert "apiserver answered 403" in control_plane.logs("incluster", namespace)
