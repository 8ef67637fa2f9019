"""The real node runs a pod as a cluster does: its image pulled from the local registry, as user 65532
on a read-only root filesystem, with an IP on the CNI bridge, reaching the apiserver through the
`kubernetes` Service and reached from the host through its own Service's ClusterIP (kube-proxy)."""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.node_fixtures import NodeCluster
from tests.support.polling import poll_until
from tests.support.realnode import FAKE_DEVICES
from tests.support.realnode_config import POD_SUBNET

pytestmark = [pytest.mark.node, pytest.mark.slow, pytest.mark.timeout(1800)]

# Runs in the operator image's Python: calls the apiserver with the pod's ServiceAccount token,
# tries to write to its root filesystem, then serves HTTP on 8080 from /tmp.
PROBE = """
import http.server, os, ssl, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
host = os.environ["KUBERNETES_SERVICE_HOST"] + ":" + os.environ["KUBERNETES_SERVICE_PORT"]
req = urllib.request.Request("https://" + host + "/version",
    headers={"Authorization": "Bearer " + open(sa + "token").read()})
with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=sa + "ca.crt")) as r:
    print("apiserver", host, r.status, r.read().decode().replace(chr(10), ""), flush=True)
try:
    open("/written", "w")
    print("root filesystem: writable", flush=True)
except OSError as e:
    print("root filesystem:", e.strerror, flush=True)
print("uid", os.getuid(), flush=True)
os.chdir("/tmp")
open("/tmp/index.html", "w").write("served from a pod")
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), http.server.SimpleHTTPRequestHandler).serve_forever()
"""


@pytest.fixture
def namespace(real_cluster: NodeCluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    real_cluster.kubectl("create", "namespace", name)
    yield name
    real_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _pod(image: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe", "labels": {"app": "probe"}},
        "spec": {
            "securityContext": {"runAsUser": 65532, "runAsGroup": 65532, "runAsNonRoot": True},
            "containers": [
                {
                    "name": "probe",
                    "image": image,
                    "command": ["python3", "-c", PROBE],
                    "ports": [{"containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
                    "securityContext": {
                        "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }


SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "probe"},
    "spec": {"selector": {"app": "probe"}, "ports": [{"port": 80, "targetPort": 8080}]},
}


def test_node_is_ready_with_the_fake_accelerators(real_cluster: NodeCluster) -> None:
    node = real_cluster.get("node", real_cluster.node.name)
    for resource, count in FAKE_DEVICES.items():
        assert node["status"]["allocatable"].get(resource) == count, node["status"]["allocatable"]
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://2.")


def test_pod_from_the_registry_on_the_pod_network(
    real_cluster: NodeCluster, node_images: dict[str, str], namespace: str
) -> None:
    c = real_cluster
    c.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(_pod(node_images["operator"])))
    c.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(SERVICE))

    def ready() -> dict[str, Any] | None:
        pod = c.get("pod", "probe", namespace)
        conditions = pod.get("status", {}).get("conditions", [])
        return pod if any(x["type"] == "Ready" and x["status"] == "True" for x in conditions) else None

    try:
        pod = c.wait(ready, timeout=300, what="the probe pod to be Ready")
    except BaseException:
        print(c.describe(namespace))
        raise
    assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network(POD_SUBNET)
    assert pod["status"]["containerStatuses"][0]["imageID"].startswith(
        node_images["operator"].rsplit(":", 1)[0]
    )

    logs = c.logs("probe", namespace)
    assert "apiserver 10.96.0.1:443 200" in logs and '"gitVersion": "v1.36.3"' in logs, logs
    assert "root filesystem: Read-only file system" in logs, logs
    assert "uid 65532" in logs, logs

    cluster_ip = c.get("service", "probe", namespace)["spec"]["clusterIP"]
    replies: list[httpx.Response] = []

    def answered() -> bool:
        # kube-proxy programs the Service's rules after it sees the ready endpoint, so a pod that is
        # Ready may still be refused through its ClusterIP for a moment.
        try:
            replies.append(httpx.get(f"http://{cluster_ip}/index.html", timeout=10))
        except httpx.ConnectError:
            return False
        return True

    poll_until(answered, "the probe pod through its ClusterIP", bound=120, interval=0.5)
    assert replies[-1].status_code == 200 and replies[-1].text == "served from a pod"
