"""The real `localmodel-operator` against the real control plane, under the chart's RBAC (not as admin).

One operator process serves the whole module (it watches every namespace; each test has its own).
Runtime pods run on the process node; most tests here do not need them to serve, only to exist.
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, TypeVar

import pytest

from localmodel_operator.settings import settings_from_dict
from localmodel_runtime.backends.registry import LIBRARIES
from tests.support.cluster_objects import condition
from tests.support.fixtures import Cluster
from tests.support.operator_process import OperatorProcess, operator_on
from tests.support.polling import poll_until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

T = TypeVar("T")
JsonDict = dict[str, Any]
# The image table comes from the operator's configuration: a registry and tag of our own prove it.
OPERATOR_CONFIG = {"registry": "registry.test/localmodel", "tag": "t1"}
SETTINGS = settings_from_dict(OPERATOR_CONFIG)
OWNER_KEYS = ("apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion")
QUIET_SECONDS = 5.0  # how long an object is watched for writes nobody asked for


@pytest.fixture(scope="module")
def operator_proc(
    control_plane: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    yield from operator_on(control_plane, tmp_path_factory.mktemp("operator"), OPERATOR_CONFIG)


@pytest.fixture
def op(operator_proc: OperatorProcess) -> Iterator[OperatorProcess]:
    """The module's operator; its log tail is printed after each test (pytest shows it on failure)."""
    if operator_proc.proc is None:  # a test that stopped it failed before starting it again
        operator_proc.start()
    yield operator_proc
    print(f"--- operator log (tail) ---\n{operator_proc.output(120)}")


# ---------------------------------------------------------------------------------------------- helpers
def missing_backend() -> tuple[str, str]:
    """A (backend, device) whose library the runtime pods (this interpreter's venv) do not have."""
    for backend, device in (
        ("transformers", "cpu"),
        ("rwkv", "cpu"),
        ("vllm", "nvidia"),
        ("exllama2", "nvidia"),
    ):
        if any(importlib.util.find_spec(lib) is None for lib in LIBRARIES[backend]):
            return backend, device
    pytest.fail("every backend library is installed here: no backend is missing to test MissingBackend")


def local_model(name: str, spec: JsonDict) -> str:
    return json.dumps(
        {
            "apiVersion": "localmodel.dev/v1alpha1",
            "kind": "LocalModel",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def llama(**extra: Any) -> JsonDict:
    return {"backend": "llama", "parameters": {"model": "tiny.gguf"}, **extra}


def wait(check: Callable[[], T | None], op: OperatorProcess, timeout: float = 90.0, what: str = "it") -> T:
    """`poll_until` every half second, failing with the operator's log tail."""
    return poll_until(check, what, timeout, interval=0.5, context=lambda: op.output(80))


def get(cluster: Cluster, kind: str, name: str, ns: str) -> JsonDict | None:
    res = cluster.kubectl("get", kind, name, "-n", ns, "-o", "json", check=False)
    if res.returncode != 0:
        if "NotFound" in res.stderr:
            return None
        raise AssertionError(res.stderr)
    obj: JsonDict = json.loads(res.stdout)
    return obj


def reconciled(cluster: Cluster, ns: str, name: str) -> tuple[JsonDict, JsonDict] | None:
    """(LocalModel, Deployment) once the status reports the current generation and the Deployment exists."""
    lm = get(cluster, "localmodel", name, ns)
    if lm is None or lm.get("status", {}).get("observedGeneration") != lm["metadata"]["generation"]:
        return None
    deployment = get(cluster, "deployment", name, ns)
    return (lm, deployment) if deployment else None


def degraded(cluster: Cluster, ns: str, name: str, reason: str) -> JsonDict | None:
    lm = get(cluster, "localmodel", name, ns)
    if lm is None or lm.get("status", {}).get("observedGeneration") != lm["metadata"]["generation"]:
        return None
    cond = condition(lm, "Degraded")
    return lm if cond.get("status") == "True" and cond.get("reason") == reason else None


def events(cluster: Cluster, ns: str, name: str) -> list[JsonDict]:
    items: list[JsonDict] = cluster.get("events", namespace=ns)["items"]
    return [e for e in items if e["involvedObject"].get("name") == name]


def events_for(cluster: Cluster, ns: str, name: str, reason: str) -> list[JsonDict]:
    return [e for e in events(cluster, ns, name) if e["reason"] == reason]


def versions(cluster: Cluster, ns: str, name: str, kinds: tuple[str, ...]) -> dict[str, str]:
    names = {"configmap": f"{name}-config", "persistentvolumeclaim": f"{name}-models"}
    out = {}
    for kind in kinds:
        obj = get(cluster, kind, names.get(kind, name), ns)
        assert obj is not None, f"{kind} of {name} is missing"
        out[kind] = obj["metadata"]["resourceVersion"]
    return out


def settled(cluster: Cluster, ns: str, name: str) -> bool:
    """The Deployment's status is current and its claim bound: the other controllers are done writing."""
    deployment = get(cluster, "deployment", name, ns)
    claim = get(cluster, "persistentvolumeclaim", f"{name}-models", ns)
    return bool(
        deployment
        and deployment.get("status", {}).get("observedGeneration") == deployment["metadata"]["generation"]
        and claim
        and claim.get("status", {}).get("phase") == "Bound"
    )


def handled(op: OperatorProcess, ns: str, name: str) -> int:
    """How many times kopf finished handling the object in this run (creation, update or resume)."""
    return sum(
        1
        for r in op.records()
        if str(r.get("message", "")).endswith("is processed: 1 succeeded; 0 failed.")
        and (r.get("object") or {}).get("name") == name
        and (r.get("object") or {}).get("namespace") == ns
    )


def log_records_about(op: OperatorProcess, ns: str, name: str) -> int:
    return sum(
        1
        for r in op.records()
        if (r.get("object") or {}).get("name") == name and (r.get("object") or {}).get("namespace") == ns
    )


# ------------------------------------------------------------------------------------------------ tests
def test_create_builds_owned_children_and_reports_status(
    control_plane: Cluster, namespace: str, op: OperatorProcess
) -> None:
    spec = llama(
        name="alpha-model",
        context_size=512,
        deployment={"resources": {"requests": {"cpu": "250m"}}, "storage": {"size": "1Gi"}},
    )
    control_plane.apply(local_model("alpha", spec), namespace)
    lm, deployment = wait(lambda: reconciled(control_plane, namespace, "alpha"), op, what="alpha reconciled")
    owner = {
        "apiVersion": "localmodel.dev/v1alpha1",
        "kind": "LocalModel",
        "name": "alpha",
        "uid": lm["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    children = {
        "configmap": get(control_plane, "configmap", "alpha-config", namespace),
        "deployment": deployment,
        "service": get(control_plane, "service", "alpha", namespace),
        "persistentvolumeclaim": get(control_plane, "persistentvolumeclaim", "alpha-models", namespace),
    }
    for kind, child in children.items():
        assert child is not None, f"no {kind}"
        refs = [{k: r.get(k) for k in OWNER_KEYS} for r in child["metadata"].get("ownerReferences", [])]
        assert refs == [owner], kind
        labels = child["metadata"]["labels"]
        assert labels["localmodel.dev/model"] == "alpha", kind
        assert labels["app.kubernetes.io/managed-by"] == "localmodel-operator", kind
        shown = control_plane.kubectl(
            "get", kind, child["metadata"]["name"], "-n", namespace, "-o", "json", "--show-managed-fields"
        )
        managers = {
            (m["manager"], m["operation"]) for m in json.loads(shown.stdout)["metadata"]["managedFields"]
        }
        assert ("localmodel-operator", "Apply") in managers, kind

    image = SETTINGS.images["llama/cpu"].image
    assert image == "registry.test/localmodel/runtime:t1-llama-cpp-cpu"
    template = deployment["spec"]["template"]
    (container,) = template["spec"]["containers"]
    assert container["image"] == image
    assert container["resources"]["requests"] == {"cpu": "250m", "memory": "1Gi"}
    assert "limits" not in container["resources"]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert template["metadata"]["labels"]["localmodel.dev/model"] == "alpha"
    assert len(template["metadata"]["annotations"]["localmodel.dev/config-hash"]) == 16
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == "alpha-models"
    assert volumes["config"]["configMap"]["name"] == "alpha-config"
    service = children["service"]
    assert service is not None and service["spec"]["ports"][0]["name"] == "http"
    assert service["spec"]["ports"][0]["port"] == 8080
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    config_map = children["configmap"]
    assert config_map is not None
    model_yaml = config_map["data"]["model.yaml"]
    assert "context_size: 512" in model_yaml and "name: alpha-model" in model_yaml
    assert "deployment" not in model_yaml

    # The pod the Deployment makes is scheduled onto the process node and counted in the status.
    def counted() -> JsonDict | None:
        obj = get(control_plane, "localmodel", "alpha", namespace)
        return obj if obj and obj.get("status", {}).get("replicas") == 1 else None

    status = wait(counted, op, what="status.replicas 1")["status"]
    assert status["observedGeneration"] == lm["metadata"]["generation"]
    assert status["modelName"] == "alpha-model"
    assert (status["backend"], status["device"], status["image"]) == ("llama", "cpu", image)
    assert status["endpoint"] == f"http://alpha.{namespace}.svc:8080"
    assert status["readyReplicas"] == 0 and status["ready"] == "0/1"
    assert {c["type"] for c in status["conditions"]} == {"Ready", "Progressing", "Degraded"}
    assert all(c["observedGeneration"] == status["observedGeneration"] for c in status["conditions"])

    table = control_plane.kubectl("get", "lm", "alpha", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "MODEL", "BACKEND", "DEVICE", "READY", "AGE"]
    assert table[1].split()[:5] == ["alpha", "alpha-model", "llama", "cpu", "0/1"]


def test_second_reconcile_writes_nothing(control_plane: Cluster, namespace: str, op: OperatorProcess) -> None:
    kinds = ("configmap", "deployment", "service", "persistentvolumeclaim")
    spec = llama(deployment={"replicas": 0, "storage": {"size": "1Gi"}})
    control_plane.apply(local_model("steady", spec), namespace)
    wait(lambda: reconciled(control_plane, namespace, "steady"), op, what="steady reconciled")
    wait(lambda: settled(control_plane, namespace, "steady"), op, what="the controllers to settle")
    before = versions(control_plane, namespace, "steady", kinds)

    # An update kopf handles (a new annotation) reconciles again: every apply is a no-op.
    count = handled(op, namespace, "steady")
    control_plane.kubectl("annotate", "lm", "steady", "-n", namespace, "example.com/touched=1")
    wait(lambda: handled(op, namespace, "steady") > count, op, what="the update to be handled")
    assert versions(control_plane, namespace, "steady", kinds) == before

    # So is a restart: kopf resumes every LocalModel.
    op.restart()
    wait(lambda: handled(op, namespace, "steady") >= 1, op, what="the resume to be handled")
    assert versions(control_plane, namespace, "steady", kinds) == before


def test_spec_change_rolls_pods_and_unrelated_change_does_not(
    control_plane: Cluster, namespace: str, op: OperatorProcess
) -> None:
    control_plane.apply(local_model("roll", llama(context_size=512, deployment={"replicas": 0})), namespace)
    _, first = wait(lambda: reconciled(control_plane, namespace, "roll"), op, what="roll reconciled")
    hash_key = "localmodel.dev/config-hash"

    change = {"spec": {"context_size": 1024}}
    control_plane.kubectl("patch", "lm", "roll", "-n", namespace, "--type=merge", "-p", json.dumps(change))

    def rolled() -> JsonDict | None:
        found = reconciled(control_plane, namespace, "roll")
        if found is None:
            return None
        annotations = found[1]["spec"]["template"]["metadata"]["annotations"]
        return (
            found[1]
            if annotations[hash_key] != first["spec"]["template"]["metadata"]["annotations"][hash_key]
            else None
        )

    second = wait(rolled, op, what="a new config hash")
    assert second["metadata"]["generation"] == first["metadata"]["generation"] + 1
    config_map = get(control_plane, "configmap", "roll-config", namespace)
    assert config_map is not None and "context_size: 1024" in config_map["data"]["model.yaml"]

    # What only the router reads changes nothing the pods see: no new template, no rollout.
    patch = {"spec": {"deployment": {"loadBalancing": "prefixAffinity"}}}
    control_plane.kubectl("patch", "lm", "roll", "-n", namespace, "--type=merge", "-p", json.dumps(patch))
    lm = get(control_plane, "localmodel", "roll", namespace)
    assert lm is not None
    generation = lm["metadata"]["generation"]

    def observed() -> JsonDict | None:
        found = reconciled(control_plane, namespace, "roll")
        return found[1] if found and found[0]["status"]["observedGeneration"] == generation else None

    third = wait(observed, op, what="the router-only change to be observed")
    assert third["spec"]["template"] == second["spec"]["template"]
    assert third["metadata"]["generation"] == second["metadata"]["generation"]


def test_kubectl_scale_owns_replicas_without_a_fight(
    control_plane: Cluster, namespace: str, op: OperatorProcess
) -> None:
    # A node selector nothing matches keeps the pods Pending: replicas without runtime processes.
    spec = llama(deployment={"nodeSelector": {"localmodel.test/nowhere": "true"}})
    control_plane.apply(local_model("scaly", spec), namespace)
    wait(lambda: reconciled(control_plane, namespace, "scaly"), op, what="scaly reconciled")

    control_plane.kubectl("scale", "lm", "scaly", "-n", namespace, "--replicas=3")
    lm = get(control_plane, "localmodel", "scaly", namespace)
    assert lm is not None and lm["spec"]["deployment"]["replicas"] == 3

    def scaled() -> JsonDict | None:
        found = reconciled(control_plane, namespace, "scaly")
        return found[1] if found and found[1]["spec"]["replicas"] == 3 else None

    wait(scaled, op, what="the Deployment at 3 replicas")

    def counted() -> JsonDict | None:
        obj = get(control_plane, "localmodel", "scaly", namespace)
        return obj if obj and obj.get("status", {}).get("replicas") == 3 else None

    status = wait(counted, op, what="status.replicas 3")["status"]
    assert status["selector"] == "localmodel.dev/model=scaly,app.kubernetes.io/component=runtime"
    scale = json.loads(
        control_plane.kubectl(
            "get", "lm", "scaly", "-n", namespace, "--subresource=scale", "-o", "json"
        ).stdout
    )
    assert scale["spec"]["replicas"] == 3 and scale["status"]["replicas"] == 3

    # Another reconcile keeps what the scale asked for.
    count = handled(op, namespace, "scaly")
    control_plane.kubectl("annotate", "lm", "scaly", "-n", namespace, "example.com/touched=1")
    wait(lambda: handled(op, namespace, "scaly") > count, op, what="the update to be handled")
    deployment = get(control_plane, "deployment", "scaly", namespace)
    assert deployment is not None and deployment["spec"]["replicas"] == 3
    # The pods could not schedule: that is what the status says.
    assert wait(
        lambda: degraded(control_plane, namespace, "scaly", "Unschedulable"), op, what="Unschedulable"
    )


def test_delete_garbage_collects_children(
    control_plane: Cluster, namespace: str, op: OperatorProcess
) -> None:
    control_plane.apply(local_model("gone", llama(deployment={"storage": {"size": "1Gi"}})), namespace)
    kept_spec = llama(deployment={"replicas": 0, "storage": {"size": "1Gi", "keepOnDelete": True}})
    control_plane.apply(local_model("kept", kept_spec), namespace)
    wait(lambda: reconciled(control_plane, namespace, "gone"), op, what="gone reconciled")
    wait(lambda: reconciled(control_plane, namespace, "kept"), op, what="kept reconciled")
    wait(
        lambda: control_plane.get("pods", namespace=namespace, **{"localmodel.dev/model": "gone"})["items"],
        op,
        what="gone's pod",
    )
    control_plane.kubectl("delete", "lm", "gone", "kept", "-n", namespace, "--wait=true")

    def collected() -> bool:
        kinds = ("deployment", "service", "configmap", "persistentvolumeclaim", "replicaset", "pod")
        items = control_plane.get(",".join(kinds), namespace=namespace, **{"localmodel.dev/model": "gone"})
        left = [
            i
            for i in items["items"]
            if i["kind"] != "PersistentVolumeClaim" or "deletionTimestamp" not in i["metadata"]
        ]
        return not left and not any(
            get(control_plane, kind, name, namespace)
            for kind, name in (("deployment", "kept"), ("service", "kept"), ("configmap", "kept-config"))
        )

    wait(collected, op, timeout=120, what="the children to be garbage-collected")
    kept = get(control_plane, "persistentvolumeclaim", "kept-models", namespace)
    assert kept is not None and not kept["metadata"].get("ownerReferences")


def test_invalid_specs_degrade_without_a_hot_loop(
    control_plane: Cluster, namespace: str, op: OperatorProcess
) -> None:
    bad_device = {"backend": "exllama2", "parameters": {"model": "m"}, "deployment": {"device": "cpu"}}
    bad_template = llama(template={"chat": "Hello\n{{ .Input | nosuchfunc }}"}, deployment={"replicas": 0})
    for name, spec in (
        ("bad-device", bad_device),
        ("bad-template", bad_template),
        ("fine", llama(deployment={"replicas": 0})),
    ):
        control_plane.apply(local_model(name, spec), namespace)

    wait(lambda: reconciled(control_plane, namespace, "fine"), op, what="the valid one reconciled")
    lm = wait(
        lambda: degraded(control_plane, namespace, "bad-device", "UnsupportedDevice"), op, what="bad-device"
    )
    assert "exllama2 cannot run on cpu" in condition(lm, "Degraded")["message"]
    assert condition(lm, "Ready")["status"] == "False"
    lm = wait(
        lambda: degraded(control_plane, namespace, "bad-template", "InvalidSpec"), op, what="bad-template"
    )
    message = condition(lm, "Degraded")["message"]
    assert message.startswith("template.chat: line 2, column ") and "nosuchfunc" in message, message
    for name, reason in (("bad-device", "UnsupportedDevice"), ("bad-template", "InvalidSpec")):
        assert get(control_plane, "deployment", name, namespace) is None
        assert get(control_plane, "configmap", f"{name}-config", namespace) is None
        found = wait(partial(events_for, control_plane, namespace, name, reason), op, what=f"{reason} Event")
        assert found[0]["type"] == "Warning" and found[0]["source"]["component"] == "localmodel-operator"

    # No hot loop: nothing writes to the invalid objects and the operator says nothing more about them.
    before = {n: get(control_plane, "localmodel", n, namespace) for n in ("bad-device", "bad-template")}
    said = {n: log_records_about(op, namespace, n) for n in before}
    time.sleep(QUIET_SECONDS)
    for name, obj in before.items():
        after = get(control_plane, "localmodel", name, namespace)
        assert obj is not None and after is not None
        assert after["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"], name
        assert log_records_about(op, namespace, name) == said[name], name
    assert op.proc is not None and op.proc.poll() is None

    # Fixing the spec is what retries it.
    patch = {"spec": {"deployment": {"device": "nvidia", "replicas": 0}}}
    control_plane.kubectl(
        "patch", "lm", "bad-device", "-n", namespace, "--type=merge", "-p", json.dumps(patch)
    )
    lm, deployment = wait(
        lambda: reconciled(control_plane, namespace, "bad-device"), op, what="the fixed one"
    )
    assert condition(lm, "Degraded")["status"] == "False"
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {
        "nvidia.com/gpu": "1"
    }


def test_restart_mid_reconcile_converges_without_duplicates(
    control_plane: Cluster, namespace: str, op: OperatorProcess
) -> None:
    names = [f"m{i}" for i in range(8)]
    op.stop()
    try:
        for name in names:
            control_plane.apply(local_model(name, llama(deployment={"replicas": 0})), namespace)
        op.start()
        # Kill it as soon as the first child appears: the other models are half done or not started.
        managed = {"app.kubernetes.io/managed-by": "localmodel-operator"}
        wait(
            lambda: control_plane.get("configmaps", namespace=namespace, **managed)["items"],
            op,
            what="the first child",
        )
        op.kill()
    finally:
        if op.proc is None:
            op.start()
    for name in names:
        wait(partial(reconciled, control_plane, namespace, name), op, what=f"{name} reconciled")
    managed = {"app.kubernetes.io/managed-by": "localmodel-operator"}
    for kind in ("deployments", "services", "configmaps"):
        items = control_plane.get(kind, namespace=namespace, **managed)["items"]
        owners = sorted(i["metadata"]["labels"]["localmodel.dev/model"] for i in items)
        assert owners == sorted(names), kind
        assert all(len(i["metadata"]["ownerReferences"]) == 1 for i in items), kind
    replica_sets = control_plane.get("replicasets", namespace=namespace)["items"]
    assert sorted(r["metadata"]["ownerReferences"][0]["name"] for r in replica_sets) == sorted(names)


def test_gpu_models_schedule_on_fake_capacity_or_say_unschedulable(
    control_plane: Cluster, namespace: str, op: OperatorProcess
) -> None:
    vllm = {
        "backend": "vllm",
        "parameters": {"model": "facebook/opt-125m"},
        "tensor_parallel_size": 2,
        "deployment": {"device": "nvidia"},
    }
    too_big = {**vllm, "tensor_parallel_size": 1, "deployment": {"device": "nvidia", "gpus": 3}}
    control_plane.apply(local_model("vllm", vllm), namespace)
    control_plane.apply(local_model("too-big", too_big), namespace)

    def bound() -> JsonDict | None:
        pods = control_plane.get("pods", namespace=namespace, **{"localmodel.dev/model": "vllm"})["items"]
        return pods[0] if pods and pods[0]["spec"].get("nodeName") else None

    pod = wait(bound, op, what="the vLLM pod bound to a node")
    assert pod["spec"]["nodeName"] == control_plane.node.name
    (container,) = pod["spec"]["containers"]
    assert container["image"] == SETTINGS.images["vllm/nvidia"].image
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "2"
    toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert toleration in pod["spec"]["tolerations"]

    lm = wait(
        lambda: degraded(control_plane, namespace, "too-big", "Unschedulable"),
        op,
        what="too-big Unschedulable",
    )
    assert "nvidia.com/gpu" in condition(lm, "Degraded")["message"]
    assert condition(lm, "Ready")["reason"] == "Unschedulable"
    assert lm["status"]["device"] == "nvidia"
    pods = control_plane.get("pods", namespace=namespace, **{"localmodel.dev/model": "too-big"})
    (pending,) = pods["items"]
    assert pending["status"]["phase"] == "Pending" and not pending["spec"].get("nodeName")
    assert [e for e in events(control_plane, namespace, "too-big") if e["reason"] == "Unschedulable"]


def test_runtime_failures_become_degraded_reasons(
    control_plane: Cluster, namespace: str, op: OperatorProcess
) -> None:
    """The runtime's termination message (`MissingBackend: …`, `ModelLoadError: …`) names the reason."""
    backend, device = missing_backend()
    no_library = {"backend": backend, "parameters": {"model": "org/model"}, "deployment": {"device": device}}
    control_plane.apply(local_model("no-library", no_library), namespace)
    control_plane.apply(local_model("no-file", llama()), namespace)
    for name, reason in (("no-library", "MissingBackend"), ("no-file", "ModelLoadError")):
        lm = wait(partial(degraded, control_plane, namespace, name, reason), op, timeout=180, what=reason)
        message = condition(lm, "Degraded")["message"]
        assert message.startswith(f"{name}-") and f"{reason}:" not in message, message
        assert condition(lm, "Ready")["reason"] == reason
        found = events_for(control_plane, namespace, name, reason)
        assert found and all(e["type"] == "Warning" for e in found)
        pod = control_plane.get("pods", namespace=namespace, **{"localmodel.dev/model": name})["items"][0]
        (status,) = pod["status"]["containerStatuses"]
        terminated = (status.get("lastState") or status["state"]).get("terminated") or {}
        assert terminated.get("message", "").startswith(f"{reason}: "), status


def test_objects_it_did_not_create_are_never_adopted(
    control_plane: Cluster, namespace: str, op: OperatorProcess
) -> None:
    # A team's own ConfigMap and Service that happen to carry the names a LocalModel's children would.
    control_plane.apply(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "billing-config"},
                "data": {"db": "postgres://billing"},
            }
        ),
        namespace,
    )
    control_plane.apply(local_model("billing", llama(deployment={"replicas": 0})), namespace)
    lm = wait(
        lambda: degraded(control_plane, namespace, "billing", "ChildConflict"), op, what="ChildConflict"
    )
    message = condition(lm, "Degraded")["message"]
    assert "ConfigMap billing-config already exists" in message and "left untouched" in message, message
    found = wait(partial(events_for, control_plane, namespace, "billing", "ChildConflict"), op, what="Event")
    assert found[0]["type"] == "Warning"
    users = get(control_plane, "configmap", "billing-config", namespace)
    assert users is not None and users["data"] == {"db": "postgres://billing"}
    assert not users["metadata"].get("ownerReferences")
    assert get(control_plane, "deployment", "billing", namespace) is None

    # Deleting the LocalModel leaves the team's ConfigMap; once it is gone, a new model of that name works.
    control_plane.kubectl("delete", "localmodel", "billing", "-n", namespace, "--wait=true")
    assert get(control_plane, "configmap", "billing-config", namespace) is not None
    control_plane.kubectl("delete", "configmap", "billing-config", "-n", namespace)
    control_plane.apply(local_model("billing", llama(deployment={"replicas": 0})), namespace)
    lm, _ = wait(lambda: reconciled(control_plane, namespace, "billing"), op, what="billing reconciled")
    assert condition(lm, "Degraded")["status"] == "False"


def test_a_name_held_in_another_namespace_is_name_conflict_until_the_holder_goes(
    control_plane: Cluster, namespace: str, op: OperatorProcess
) -> None:
    other = f"{namespace}-b"  # sorts after `namespace`: it loses a tie on creation time too
    control_plane.kubectl("create", "namespace", other)
    try:
        spec = llama(name="shared", deployment={"replicas": 0})
        control_plane.apply(local_model("team-a", spec), namespace)
        wait(lambda: reconciled(control_plane, namespace, "team-a"), op, what="team-a reconciled")
        control_plane.apply(local_model("team-b", spec), other)
        lm = wait(lambda: degraded(control_plane, other, "team-b", "NameConflict"), op, what="NameConflict")
        message = condition(lm, "Degraded")["message"]
        assert f"older LocalModel {namespace}/team-a" in message, message
        found = wait(partial(events_for, control_plane, other, "team-b", "NameConflict"), op, what="Event")
        assert found[0]["type"] == "Warning"
        assert get(control_plane, "deployment", "team-b", other) is None
        a = get(control_plane, "localmodel", "team-a", namespace)
        assert a is not None and condition(a, "Degraded")["status"] == "False"

        # The holder goes: the newer model takes the name over and gets its children.
        control_plane.kubectl("delete", "localmodel", "team-a", "-n", namespace)

        # The Deployment is written before the status, so wait for both (not only for the Deployment).
        def taken_over() -> JsonDict | None:
            found = reconciled(control_plane, other, "team-b")
            return found[0] if found and condition(found[0], "Degraded").get("status") == "False" else None

        lm = wait(taken_over, op, what="team-b reconciled and no longer Degraded")
        assert condition(lm, "Degraded")["reason"] != "NameConflict"
    finally:
        control_plane.kubectl("delete", "namespace", other, "--wait=false", check=False)
