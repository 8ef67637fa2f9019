"""What the operator decides from a spec alone, before it touches the cluster."""

from __future__ import annotations

from typing import Any, cast

import pytest

from localmodel_operator.kube import Kube, KubeError
from localmodel_operator.reconcile import Reconciler, RetryLater, evaluate, identity_fields
from localmodel_operator.settings import SettingsError, settings_from_dict

SETTINGS = settings_from_dict({})


def llama(**extra: Any) -> dict[str, Any]:
    return {"backend": "llama", "parameters": {"model": "m.gguf"}, **extra}


def test_valid_spec_is_placed() -> None:
    evaluation = evaluate("m", "ns", llama(), SETTINGS)
    assert evaluation.problem is None and evaluation.placement is not None
    fields = identity_fields("m", "ns", evaluation)
    assert fields["backend"] == "llama" and fields["device"] == "cpu"
    assert fields["endpoint"] == "http://m.ns.svc:8080"
    assert fields["selector"] == "localmodel.dev/model=m,app.kubernetes.io/component=runtime"


def test_untranslatable_template_is_invalid_spec_with_its_position() -> None:
    spec = llama(template={"completion": "ok {{.Input}}", "chat": "Hello\n{{ .Input | nosuchfunc }}"})
    evaluation = evaluate("m", "ns", spec, SETTINGS)
    assert evaluation.problem is not None and evaluation.placement is None
    assert evaluation.problem.reason == "InvalidSpec"
    assert evaluation.problem.message.startswith("template.chat: line 2, column ")
    assert "nosuchfunc" in evaluation.problem.message


def test_good_templates_pass() -> None:
    spec = llama(
        template={
            "chat_message": '{{if eq .RoleName "user"}}USER: {{.Content}}{{else}}{{.Content}}{{end}}',
            "chat": "{{.Input}}\nASSISTANT:",
            "completion": "{% if true %}{{ Input }}{% endif %}",
            "edit": "chatml",  # names a .tmpl file: plain text here, as for the runtime
            "use_tokenizer_template": True,
        }
    )
    assert evaluate("m", "ns", spec, SETTINGS).problem is None


def test_unsupported_device_and_schema_errors() -> None:
    spec = {"backend": "exllama2", "parameters": {"model": "m"}, "deployment": {"device": "cpu"}}
    problem = evaluate("m", "ns", spec, SETTINGS).problem
    assert problem is not None and problem.reason == "UnsupportedDevice"
    assert "exllama2 cannot run on cpu" in problem.message
    problem = evaluate("m", "ns", llama(threads=-1), SETTINGS).problem
    assert problem is not None and problem.reason == "InvalidSpec" and "threads" in problem.message


class FakeKube:
    """Records what the Reconciler writes; `reject` maps a kind to the API status that refuses it."""

    def __init__(self, body: dict[str, Any], reject: dict[str, int] | None = None) -> None:
        self.body = body
        self.reject = reject or {}
        self.applied: list[str] = []
        self.manifests: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self.events: list[tuple[str, str]] = []
        self.existing: dict[tuple[str, str], dict[str, Any]] = {}
        """Objects already on the server, by (kind, name)."""
        self.localmodels: list[dict[str, Any]] = []
        """Other LocalModels in the watched namespaces."""
        self.deployment: dict[str, Any] | None = None
        """The model's Deployment as the server has it."""
        self.reads: list[str] = []
        """The Deployment GETs and pod listings, in order."""
        self.localmodel_reads = 0
        self.version = 1
        """The LocalModel's resourceVersion, which every status patch moves on."""

    async def list_name_claimants(self, namespace: str | None, name: str) -> list[dict[str, Any]]:
        return [self.body, *self.localmodels]

    async def get_object(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        return self.existing.get((manifest["kind"], manifest["metadata"]["name"]))

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        if manifest["kind"] in self.reject:
            raise KubeError("Invalid: spec.template.spec.containers[0]: bad", self.reject[manifest["kind"]])
        self.applied.append(manifest["kind"])
        self.manifests.append(manifest)
        return manifest

    async def get_localmodel(self, namespace: str, name: str) -> dict[str, Any]:
        self.localmodel_reads += 1
        return self.body

    async def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append("deployment")
        return self.deployment

    async def list_pods(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        self.reads.append("pods")
        return []

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self.statuses.append(status)
        self.version += 1
        meta = {**self.body["metadata"], "resourceVersion": str(self.version)}
        self.body = {**self.body, "metadata": meta, "status": status}
        return self.body

    async def event(self, owner: dict[str, Any], kind: str, reason: str, message: str) -> None:
        self.events.append((kind, reason))


def body(spec: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    meta = {"name": "m", "namespace": "ns", "uid": "u-1", "generation": generation}
    return {"metadata": meta, "spec": spec}


def reconciler(kube: FakeKube) -> Reconciler:
    return Reconciler(cast(Kube, kube), SETTINGS)


async def test_invalid_spec_writes_no_children_and_reports_once() -> None:
    kube = FakeKube(body(llama(template={"chat": "{{ .Input "})))
    r = reconciler(kube)
    await r.reconcile(kube.body)
    assert kube.applied == []
    (status,) = kube.statuses
    degraded = {c["type"]: c for c in status["conditions"]}["Degraded"]
    assert (degraded["status"], degraded["reason"]) == ("True", "InvalidSpec")
    assert kube.events == [("Warning", "InvalidSpec")]  # one Event, not one per condition
    await r.reconcile(kube.body)  # again, unchanged: nothing new is written
    assert len(kube.statuses) == 1


async def test_child_rejected_by_the_api_is_invalid_spec_not_a_retry() -> None:
    kube = FakeKube(body(llama()), reject={"Deployment": 422})
    r = reconciler(kube)
    await r.reconcile(kube.body)  # does not raise: kopf must not retry a spec the API refuses
    assert "Deployment" not in kube.applied
    degraded = {c["type"]: c for c in kube.statuses[-1]["conditions"]}["Degraded"]
    assert degraded["reason"] == "InvalidSpec" and "Deployment m was rejected" in degraded["message"]
    # A refresh for the same generation (a pod event) keeps reporting it.
    await r.refresh("ns", "m")
    assert {c["type"]: c for c in kube.body["status"]["conditions"]}["Degraded"]["reason"] == "InvalidSpec"


async def test_api_outage_is_raised_for_kopf_to_retry() -> None:
    kube = FakeKube(body(llama()), reject={"ConfigMap": 503})
    with pytest.raises(KubeError):
        await reconciler(kube).reconcile(kube.body)


async def test_a_foreign_object_in_the_way_is_left_alone_and_reported() -> None:
    kube = FakeKube(body(llama()))
    users = {"metadata": {"name": "m-config", "labels": {"team": "billing"}}, "data": {"db": "postgres"}}
    kube.existing[("ConfigMap", "m-config")] = users
    with pytest.raises(RetryLater) as raised:
        await reconciler(kube).reconcile(kube.body)
    assert "ConfigMap m-config already exists" in str(raised.value)
    assert kube.applied == []  # nothing written: not the ConfigMap, not the children after it
    degraded = {c["type"]: c for c in kube.statuses[-1]["conditions"]}["Degraded"]
    assert (degraded["status"], degraded["reason"]) == ("True", "ChildConflict")
    assert "it has no owner" in degraded["message"] and "left untouched" in degraded["message"]
    assert kube.events == [("Warning", "ChildConflict")]


async def test_children_of_an_earlier_model_of_that_name_are_waited_for_quietly() -> None:
    kube = FakeKube(body(llama()))
    earlier = {"kind": "LocalModel", "name": "m", "uid": "u-0"}
    kube.existing[("ConfigMap", "m-config")] = {
        "metadata": {"name": "m-config", "ownerReferences": [earlier]}
    }
    with pytest.raises(RetryLater):
        await reconciler(kube).reconcile(kube.body)
    assert kube.applied == [] and kube.statuses == []


async def test_its_own_children_are_applied_again() -> None:
    kube = FakeKube(body(llama()))
    mine = {"kind": "LocalModel", "name": "m", "uid": "u-1"}
    kube.existing[("ConfigMap", "m-config")] = {"metadata": {"name": "m-config", "ownerReferences": [mine]}}
    await reconciler(kube).reconcile(kube.body)
    assert kube.applied == ["ConfigMap", "Service", "Deployment"]


POOLS = settings_from_dict(
    {"inferencePool": {"enabled": True, "endpointPickerRef": {"name": "epp", "port": {"number": 9002}}}}
)


class PoolKube(FakeKube):
    def __init__(self, body: dict[str, Any], crd: bool) -> None:
        super().__init__(body)
        self.crd = crd
        self.manifests: list[dict[str, Any]] = []

    async def has_crd(self, name: str) -> bool:
        assert name == "inferencepools.inference.networking.k8s.io"
        return self.crd

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.manifests.append(manifest)
        return await super().apply(manifest)


async def test_an_inference_pool_per_model_when_enabled_and_the_crd_is_there() -> None:
    kube = PoolKube(body(llama()), crd=True)
    await Reconciler(cast(Kube, kube), POOLS).reconcile(kube.body)
    assert kube.applied == ["ConfigMap", "Service", "Deployment", "InferencePool"]
    pool = kube.manifests[-1]
    assert pool["apiVersion"] == "inference.networking.k8s.io/v1"
    assert pool["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert pool["spec"]["selector"]["matchLabels"] == kube.manifests[-2]["spec"]["selector"]["matchLabels"]
    assert pool["spec"]["targetPorts"] == [{"number": 8080}]
    assert pool["spec"]["endpointPickerRef"] == {"name": "epp", "port": {"number": 9002}}


async def test_without_the_crd_one_warning_and_the_model_still_served() -> None:
    kube = PoolKube(body(llama()), crd=False)
    reconciler = Reconciler(cast(Kube, kube), POOLS)
    await reconciler.reconcile(kube.body)
    await reconciler.reconcile(kube.body)  # a second reconcile says nothing more
    assert kube.applied == ["ConfigMap", "Service", "Deployment"] * 2
    assert [e for e in kube.events if e[1] == "InferencePoolUnavailable"] == [
        ("Warning", "InferencePoolUnavailable")
    ]


def test_inference_pool_settings_are_checked() -> None:
    assert not SETTINGS.inference_pool and SETTINGS.endpoint_picker is None
    with pytest.raises(SettingsError, match=r"inferencePool\.endpointPickerRef"):
        settings_from_dict({"inferencePool": {"enabled": True, "endpointPickerRef": {"port": 1}}})
    with pytest.raises(SettingsError, match="inferencePool"):
        settings_from_dict({"inferencePool": {"enabled": "yes"}})


async def test_a_newer_localmodel_asking_for_a_held_name_gets_no_children_and_name_conflict() -> None:
    kube = FakeKube(body(llama(name="shared")))
    kube.body["metadata"]["creationTimestamp"] = "2026-01-02T00:00:00Z"
    older = {
        "metadata": {"name": "m", "namespace": "team-a", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": llama(name="shared"),
    }
    kube.localmodels.append(older)
    r = reconciler(kube)
    with pytest.raises(RetryLater, match="team-a/m"):
        await r.reconcile(kube.body)
    assert kube.applied == []
    degraded = next(c for c in kube.statuses[-1]["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "NameConflict"
    assert "team-a/m" in degraded["message"]
    assert ("Warning", "NameConflict") in kube.events
    # The holder is deleted: the waiting model is reconciled at once and takes the name over.
    kube.localmodels.clear()
    await r.released(older)
    assert "Deployment" in kube.applied
    degraded = next(c for c in kube.statuses[-1]["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "False"


async def test_a_missing_right_is_degraded_forbidden_naming_it_and_retried_later() -> None:
    kube = FakeKube(body(llama()), reject={"Service": 403})
    with pytest.raises(RetryLater, match="may not read or write Service m in namespace ns"):
        await reconciler(kube).reconcile(kube.body)
    degraded = next(c for c in kube.statuses[-1]["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "Forbidden"
    assert "watchNamespaces" in degraded["message"]


async def test_with_a_release_key_each_runtime_gets_its_own_token_from_its_secret() -> None:
    import base64

    from localmodel_runtime.resource.runtime_token import runtime_token

    kube = FakeKube(body(llama(deployment={"env": [{"name": "LOCALMODEL_RUNTIME_TOKEN", "value": "mine"}]})))
    await Reconciler(cast(Kube, kube), SETTINGS, runtime_key=b"release-key").reconcile(kube.body)
    assert kube.applied.index("Secret") < kube.applied.index("Deployment")
    secret = next(m for m in kube.manifests if m["kind"] == "Secret")
    assert secret["metadata"]["name"] == "m-runtime-token"
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert token == runtime_token(b"release-key", "ns", "m")
    deployment = next(m for m in kube.manifests if m["kind"] == "Deployment")
    runtime = deployment["spec"]["template"]["spec"]["containers"][0]
    tokens = [e for e in runtime["env"] if e["name"] == "LOCALMODEL_RUNTIME_TOKEN"]
    # The model's own value is dropped: the Secret's is the only one.
    assert tokens == [
        {
            "name": "LOCALMODEL_RUNTIME_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "m-runtime-token", "key": "token"}},
        }
    ]


def deployment(version: str, replicas: int, ready: int) -> dict[str, Any]:
    meta = {"name": "m", "resourceVersion": version, "generation": 1}
    return {"metadata": meta, "spec": {"replicas": replicas}, "status": {"readyReplicas": ready}}


async def test_pods_are_listed_only_while_replicas_are_missing() -> None:
    kube = FakeKube(body(llama()))
    r = reconciler(kube)
    for replicas, ready, listed in ((1, 0, True), (2, 1, True), (1, 1, False), (0, 0, False)):
        kube.reads.clear()
        kube.deployment = deployment("7", replicas, ready)
        await r.refresh("ns", "m")
        assert kube.reads == (["deployment", "pods"] if listed else ["deployment"]), (replicas, ready)


async def test_a_deployment_event_is_read_from_the_event_and_once() -> None:
    kube = FakeKube(body(llama()))
    r = reconciler(kube)
    kube.deployment = deployment("7", 1, 1)
    await r.reconcile(kube.body)
    # The apply's answer stood for the Deployment (the fake answers with the manifest it was given).
    assert "Deployment" in kube.applied and "deployment" not in kube.reads
    kube.reads.clear()
    await r.deployment_changed("ns", "m", deployment("8", 1, 1))
    assert kube.reads == []  # the event's own Deployment, healthy: no GET, no pod listing
    assert kube.body["status"]["readyReplicas"] == 1
    await r.deployment_changed("ns", "m", deployment("8", 1, 1))  # the same version again: nothing
    assert kube.reads == []
    await r.deployment_changed("ns", "m", None)  # deleted: asked for again
    assert kube.reads[0] == "deployment"


async def test_a_refresh_starts_from_the_newest_localmodel_known_not_a_read() -> None:
    kube = FakeKube(body(llama()))
    r = reconciler(kube)
    kube.deployment = deployment("7", 1, 0)
    await r.reconcile(kube.body)  # the body kopf handed over stands for the LocalModel
    assert kube.localmodel_reads == 0 and len(kube.statuses) == 1
    stale = kube.body
    await r.deployment_changed("ns", "m", deployment("8", 1, 1))
    assert kube.localmodel_reads == 0 and kube.statuses[-1]["readyReplicas"] == 1
    # A watch event older than the status patch's answer does not replace it: the status written
    # last is what the next refresh compares with, so an unchanged Deployment writes nothing.
    r.observed({**stale, "metadata": {**stale["metadata"], "resourceVersion": "1"}})
    writes = len(kube.statuses)
    await r.deployment_changed("ns", "m", deployment("9", 1, 1))
    assert len(kube.statuses) == writes and kube.localmodel_reads == 0
    # Deleted: forgotten, so the next refresh asks the API server (and finds it gone or back).
    await r.released(kube.body)
    await r.deployment_changed("ns", "m", deployment("10", 1, 1))
    assert kube.localmodel_reads == 1


async def test_events_tell_ready_and_degraded_changes_not_each_rollout_step() -> None:
    kube = FakeKube(body(llama()))
    r = reconciler(kube)
    await r.reconcile(kube.body)  # applied: the Deployment has no status yet (Progressing=True)
    assert kube.events == [("Normal", "Starting")]
    rolled_out = deployment("8", 1, 1)
    rolled_out["status"] |= {"updatedReplicas": 1, "replicas": 1, "observedGeneration": 1}
    await r.deployment_changed("ns", "m", rolled_out)
    assert kube.events == [("Normal", "Starting"), ("Normal", "Available")]
    conditions = {c["type"]: c["status"] for c in kube.statuses[-1]["conditions"]}
    assert conditions["Progressing"] == "False"  # the condition still says where a rollout is
