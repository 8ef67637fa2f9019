"""The Helm chart, the Dockerfiles and the image scripts agree with each other and with the code:
`helm lint` is clean, the chart renders with its defaults and with every option on, its CRD and RBAC
are the single sources' copies, its values schema rejects mistakes, and every runtime image the
operator can ask for has a build target. (The chart on a real API server: tests/cluster/test_chart.py.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from localmodel_operator import main as operator_main
from localmodel_operator.settings import settings_from_dict
from localmodel_router import main as router_main
from localmodel_runtime.config import LocalModelSpec
from tests.support import podspec
from tests.support.chart import ALL_FEATURES, CHART, ROOT, run_helm, set_json

DEFAULTS = ROOT / "operator" / "localmodel_operator" / "defaults.yaml"
JsonDict = dict[str, Any]


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_helm(*args, check=check)


def render(values: JsonDict | None = None, *extra: str, namespace: str = "lm-system") -> list[JsonDict]:
    args = ["template", "lm", str(CHART), "--namespace", namespace, *extra, *set_json(values or {})]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def by_kind(docs: Sequence[JsonDict]) -> dict[tuple[str, str], JsonDict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def _container(deployment: JsonDict) -> JsonDict:
    containers: list[JsonDict] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_helm_lint_is_clean(tmp_path: Path) -> None:
    values = tmp_path / "all.yaml"
    values.write_text(yaml.safe_dump(ALL_FEATURES))
    for args in ([], ["--values", str(values)]):
        res = helm("lint", "--strict", str(CHART), *args)
        assert "[WARNING]" not in res.stdout and "[ERROR]" not in res.stdout, res.stdout


def test_helm_knows_its_kubernetes_version(tmp_path: Path) -> None:
    # A helm built from Go modules without the version stamp takes itself for v1.20 and refuses the
    # chart; the built one renders it as a user runs it, without --kube-version.
    probe = tmp_path / "probe"
    (probe / "templates").mkdir(parents=True)
    (probe / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (probe / "templates" / "version.yaml").write_text(
        "major: {{ .Capabilities.KubeVersion.Major | quote }}\n"
        "minor: {{ .Capabilities.KubeVersion.Minor | quote }}\n"
    )
    rendered = yaml.safe_load(helm("template", "p", str(probe)).stdout)
    assert rendered["major"] == "1" and int(rendered["minor"]) >= 25, rendered
    assert helm("template", "lm", str(CHART)).returncode == 0


def test_chart_refuses_kubernetes_older_than_1_25() -> None:
    old = helm("template", "lm", str(CHART), "--kube-version", "1.24.9", check=False)
    assert old.returncode != 0 and "kubeVersion" in old.stderr and ">=1.25.0-0" in old.stderr
    assert helm("template", "lm", str(CHART), "--kube-version", "1.25.0").returncode == 0


def test_defaults_render_a_hardened_operator_and_router() -> None:
    objs = by_kind(render())
    assert set(objs) == {
        ("ServiceAccount", "lm-localmodel-operator"),
        ("ServiceAccount", "lm-localmodel-router"),
        ("ConfigMap", "lm-localmodel-operator"),
        ("ClusterRole", "lm-system-lm-localmodel-operator"),
        ("ClusterRole", "lm-system-lm-localmodel-router"),
        ("ClusterRoleBinding", "lm-system-lm-localmodel-operator"),
        ("ClusterRoleBinding", "lm-system-lm-localmodel-router"),
        ("Service", "lm-localmodel-router"),
        ("Deployment", "lm-localmodel-operator"),
        ("Deployment", "lm-localmodel-router"),
        ("ValidatingAdmissionPolicy", "lm-system-lm-localmodel-tenant-policy"),
        ("ValidatingAdmissionPolicyBinding", "lm-system-lm-localmodel-tenant-policy"),
        ("Secret", "lm-localmodel-runtime-key"),
    }
    operator = objs["Deployment", "lm-localmodel-operator"]
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}
    router = objs["Deployment", "lm-localmodel-router"]
    assert router["spec"]["replicas"] == 1
    for deployment, command in ((operator, "localmodel-operator"), (router, "localmodel-router")):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        c = _container(deployment)
        assert c["image"] == "ghcr.io/localmodel/operator:0.1.0"
        assert c["command"] == [command]
        assert c["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        }
        assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] in ("/healthz", "/readyz")
    assert "--all-namespaces" in _container(router)["args"]
    service = objs["Service", "lm-localmodel-router"]
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"] == router["spec"]["selector"]["matchLabels"]
    assert router["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "router"


def test_operator_config_is_the_values_image_table_and_loads() -> None:
    objs = by_kind(render(None, "--set", "registry=registry.example/lm", "--set", "tag=1.2.3"))
    config = yaml.safe_load(objs["ConfigMap", "lm-localmodel-operator"]["data"]["operator.yaml"])
    settings = settings_from_dict(config)
    assert settings.namespaces == ()
    llama = settings.image_for("llama", "cpu")
    assert llama is not None and llama.image == "registry.example/lm/runtime:1.2.3-llama-cpp-cpu"
    # The checksum annotation rolls the operator when its configuration changes.
    checksums = {
        _checksum(render(None, "--set", f"operator.config.startupTimeoutSeconds={n}")) for n in (60, 61)
    }
    assert len(checksums) == 2


def _checksum(docs: list[JsonDict]) -> str:
    operator = by_kind(docs)["Deployment", "lm-localmodel-operator"]
    return str(operator["spec"]["template"]["metadata"]["annotations"]["checksum/config"])


def test_values_operator_config_equals_the_operator_defaults() -> None:
    """values.yaml shows the whole image table; it must not drift from the packaged defaults."""
    defaults = yaml.safe_load(DEFAULTS.read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    shown = {**values["operator"]["config"], "registry": values["registry"], "tag": chart["appVersion"]}
    shown["namespaces"] = values["watchNamespaces"]
    assert shown == defaults
    version = re.search(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version is not None
    assert chart["appVersion"] == chart["version"] == version.group(1) == defaults["tag"]


def test_every_optional_feature_renders() -> None:
    objs = by_kind(render(ALL_FEATURES))
    kinds = {kind for kind, _ in objs}
    assert {
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "NetworkPolicy",
    } <= kinds
    router = objs["Deployment", "lm-localmodel-router"]
    assert "replicas" not in router["spec"]  # the HPA owns it
    args = _container(router)["args"]
    assert "--namespace=models-a" in args and "--namespace=models-b" in args
    assert "--all-namespaces" not in args
    assert "--api-keys-file=/etc/localmodel/api-keys/api-keys" in args
    auto = [a for a in args if a.startswith("--auto-setup")]
    assert auto == [
        "--auto-setup",
        "--auto-setup-namespace=models-a",
        "--auto-setup-allow-repo=TheBloke/*",
        "--auto-setup-max-models=3",
    ]
    # Creating LocalModels is allowed only in the automatic-setup namespace, not cluster-wide.
    role = objs["Role", "lm-localmodel-router-autosetup"]
    assert role["metadata"]["namespace"] == "models-a"
    assert role["rules"] == yaml.safe_load((CHART / "files" / "router-autosetup-rules.yaml").read_text())
    binding = objs["RoleBinding", "lm-localmodel-router-autosetup"]
    assert binding["metadata"]["namespace"] == "models-a"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "lm-localmodel-router", "namespace": "lm-system"}
    ]
    assert ("ClusterRole", "lm-system-lm-localmodel-router") not in objs
    watched_rules = objs["Role", "lm-localmodel-router"]["rules"]
    assert not any("create" in rule["verbs"] and "localmodels" in rule["resources"] for rule in watched_rules)
    volumes = router["spec"]["template"]["spec"]["volumes"]
    assert {"name": "api-keys", "secret": {"secretName": "router-keys"}} in volumes
    operator = objs["Deployment", "lm-localmodel-operator"]
    assert {"--verbose", "--watch-timeout=120"} <= set(_container(operator)["args"])
    config = yaml.safe_load(objs["ConfigMap", "lm-localmodel-operator"]["data"]["operator.yaml"])
    assert config["namespaces"] == ["models-a", "models-b"]
    policies = [d for d in render(ALL_FEATURES) if d["kind"] == "NetworkPolicy"]
    assert sorted(p["metadata"]["namespace"] for p in policies) == ["models-a", "models-b"]
    rule = policies[0]["spec"]["ingress"][0]
    assert policies[0]["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/component": "runtime"}}
    assert rule["from"][0]["podSelector"]["matchLabels"] == router["spec"]["selector"]["matchLabels"]
    assert rule["from"][0]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "lm-system"}
    }
    assert objs["Service", "lm-localmodel-router"]["spec"]["ports"][0]["nodePort"] == 30080
    backend = objs["Ingress", "lm-localmodel-router"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend == {"service": {"name": "lm-localmodel-router", "port": {"name": "http"}}}


@pytest.mark.parametrize("values", [{}, ALL_FEATURES], ids=["defaults", "all-features"])
def test_programs_accept_the_rendered_arguments(values: JsonDict) -> None:
    objs = by_kind(render(values))
    for component, parser in (
        ("operator", operator_main.build_parser()),
        ("router", router_main.build_parser()),
    ):
        args = _container(objs["Deployment", f"lm-localmodel-{component}"])["args"]
        parser.parse_args(args)  # an unknown or malformed flag raises


@pytest.mark.parametrize("seconds", [50, 120.5])
def test_the_routers_grace_period_covers_its_prestop_sleep_and_graceful_shutdown(seconds: float) -> None:
    router = by_kind(render({"router": {"timeouts": {"gracefulShutdown": seconds}}}))[
        "Deployment", "lm-localmodel-router"
    ]
    container = _container(router)
    prestop = float(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert router_main.build_parser().parse_args(container["args"]).graceful_shutdown == seconds
    # Past the grace period the kubelet's SIGKILL cuts streams without a word.
    assert router["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > prestop + seconds


def test_network_policy_defaults_to_the_release_namespace() -> None:
    docs = render({"networkPolicy": {"enabled": True}})
    assert [d["metadata"]["namespace"] for d in docs if d["kind"] == "NetworkPolicy"] == ["lm-system"]
    docs = render(
        {"networkPolicy": {"enabled": True, "namespaces": ["extra"]}, "watchNamespaces": ["a", "b"]}
    )
    assert sorted(d["metadata"]["namespace"] for d in docs if d["kind"] == "NetworkPolicy") == [
        "a",
        "b",
        "extra",
    ]


def test_watched_namespaces_get_roles_and_nothing_cluster_wide_but_reads_for_kopf() -> None:
    objs = by_kind(render({"watchNamespaces": ["a", "b"]}))
    cluster_kinds = {(k, n) for k, n in objs if k in ("ClusterRole", "ClusterRoleBinding")}
    assert cluster_kinds == {
        ("ClusterRole", "lm-system-lm-localmodel-operator"),
        ("ClusterRoleBinding", "lm-system-lm-localmodel-operator"),
    }
    crd_rules = yaml.safe_load((CHART / "files" / "operator-cluster-rules.yaml").read_text())
    assert objs["ClusterRole", "lm-system-lm-localmodel-operator"]["rules"] == crd_rules
    assert [r["resources"] for r in crd_rules] == [["customresourcedefinitions"], ["namespaces"]]
    assert all(set(r["verbs"]) <= {"get", "list", "watch"} for r in crd_rules)
    docs = render({"watchNamespaces": ["a", "b"]})
    for component in ("operator", "router"):
        rules = yaml.safe_load((CHART / "files" / f"{component}-rules.yaml").read_text())
        roles = [
            d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == f"lm-localmodel-{component}"
        ]
        assert sorted(r["metadata"]["namespace"] for r in roles) == ["a", "b"]
        assert all(r["rules"] == rules for r in roles)
        bindings = [
            d
            for d in docs
            if d["kind"] == "RoleBinding" and d["metadata"]["name"] == f"lm-localmodel-{component}"
        ]
        assert sorted(b["metadata"]["namespace"] for b in bindings) == ["a", "b"]
        account = {"kind": "ServiceAccount", "name": f"lm-localmodel-{component}", "namespace": "lm-system"}
        assert all(b["subjects"] == [account] for b in bindings)


def test_chart_crd_is_the_generated_crd() -> None:
    """Helm reads only files inside the chart: crds/ holds a copy (`make chart-crd`)."""
    generated = (ROOT / "crds" / "localmodel.yaml").read_text()
    assert (CHART / "crds" / "localmodel.yaml").read_text() == generated, "run `make chart-crd`"
    shown = [d for d in yaml.safe_load_all(helm("show", "crds", str(CHART)).stdout) if d]
    assert shown == [yaml.safe_load(generated)]


def test_cluster_roles_are_the_rules_files() -> None:
    objs = by_kind(render())
    for component in ("operator", "router"):
        rules = yaml.safe_load((CHART / "files" / f"{component}-rules.yaml").read_text())
        if component == "operator":
            rules += yaml.safe_load((CHART / "files" / "operator-cluster-rules.yaml").read_text())
        role = objs["ClusterRole", f"lm-system-lm-localmodel-{component}"]
        assert role["rules"] == rules
        binding = objs["ClusterRoleBinding", f"lm-system-lm-localmodel-{component}"]
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        account = f"lm-localmodel-{component}"
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "lm-system"}]
        deployment = objs["Deployment", f"lm-localmodel-{component}"]
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--set", "router.replicas=two"], "replicas"),
        (["--set", "registyr=typo.example"], "registyr"),
        (["--set", "router.service.type=Ingress"], "type"),
        (
            ["--set-json", 'operator.config.runtimeImages={"foo/cpu": {"readOnlyRootFilesystem": true}}'],
            "image",
        ),
        (["--set-json", 'operator.config.runtimeImages={"llama": {"image": "x"}}'], "llama"),
        (["--set", "watchNamespaces[0]=Not_A_Namespace"], "watchNamespaces"),
    ],
)
def test_values_schema_rejects_mistakes(args: list[str], complaint: str) -> None:
    res = helm("template", "lm", str(CHART), *args, check=False)
    assert res.returncode != 0
    assert "values don't meet the specifications of the schema" in res.stderr
    assert complaint in res.stderr


def test_values_and_examples_satisfy_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    for doc in (
        yaml.safe_load((CHART / "values.yaml").read_text()),
        yaml.safe_load((ROOT / "examples" / "kind-values.yaml").read_text()),
        ALL_FEATURES,
    ):
        jsonschema.validate(doc, schema)


def _stages(dockerfile: Path) -> dict[str, str]:
    """Build stage name → the stage it starts FROM."""
    stages = {}
    for m in re.finditer(r"^FROM\s+(\S+)\s+AS\s+(\S+)\s*$", dockerfile.read_text(), re.M):
        stages[m.group(2)] = m.group(1)
    return stages


def _stage_text(dockerfile: Path, name: str) -> str:
    text = dockerfile.read_text()
    start = re.search(rf"^FROM\s+\S+\s+AS\s+{re.escape(name)}\s*$", text, re.M)
    assert start is not None, name
    end = re.search(r"^FROM\s", text[start.end() :], re.M)
    return text[start.start() : start.end() + end.start() if end else len(text)]


def test_runtime_targets_cover_the_image_table() -> None:
    dockerfile = ROOT / "runtime" / "Dockerfile"
    stages = _stages(dockerfile)
    defaults = yaml.safe_load(DEFAULTS.read_text())
    wanted = set()
    for key, entry in defaults["runtimeImages"].items():
        m = re.fullmatch(r"\{registry\}/runtime:\{tag\}-([a-z0-9-]+)", entry["image"])
        assert m, f"{key}: {entry['image']} does not follow the scheme {{registry}}/runtime:{{tag}}-<target>"
        wanted.add(m.group(1))
    assert wanted <= set(stages)
    for target in wanted:
        text = _stage_text(dockerfile, target)
        assert "USER 65532:65532" in text, target
        base = stages[target]
        assert 'ENTRYPOINT ["localmodel-runtime"]' in _stage_text(dockerfile, base), target
    for arg in re.findall(r"^ARG \w+_IMAGE=(\S+)$", dockerfile.read_text(), re.M):
        assert re.search(r":\d+\.\d+\.\d+", arg), f"base image {arg} is not pinned to a version"
    # scripts/images.sh builds exactly these targets, under the names the operator asks for.
    listed = subprocess.run(
        ["scripts/images.sh", "list"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    table = {
        entry["image"].format(registry="ghcr.io/localmodel", tag="0.1.0")
        for entry in defaults["runtimeImages"].values()
    }
    assert set(listed) == table | {"ghcr.io/localmodel/operator:0.1.0"}


def test_operator_image_runs_both_commands_non_root() -> None:
    text = (ROOT / "operator" / "Dockerfile").read_text()
    assert '".[operator,router]"' in text
    assert "USER 65532:65532" in text
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim", text, re.M)
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = [line for line in lines if line and not line.startswith("#")]
    assert ignored[0] == "*" and "!pyproject.toml" in ignored


def test_process_node_runs_the_chart_commands_from_the_venv() -> None:
    """The test cluster maps the operator image to the venv's programs (tests/support/podspec.py)."""
    rules = podspec.default_image_map()
    mapped = podspec.resolve_image(rules, "ghcr.io/localmodel/operator:0.1.0")
    assert mapped is not None
    for command in ("localmodel-operator", "localmodel-router"):
        argv = podspec.build_argv(mapped, {"command": [command], "args": ["--help"]}, {})
        assert argv == [str(Path(sys.executable).parent / command), "--help"]
        assert Path(argv[0]).exists()


def test_inline_models_become_local_models_of_the_release() -> None:
    example = yaml.safe_load((ROOT / "examples" / "localmodels" / "gemma-3-270m.yaml").read_text())
    models = [
        {"name": "gemma", "spec": example["spec"]},
        {"name": "gemma-b", "namespace": "models-b", "spec": example["spec"]},
    ]
    rendered = [d for d in render({"models": models}) if d["kind"] == "LocalModel"]
    assert [(d["metadata"]["name"], d["metadata"]["namespace"]) for d in rendered] == [
        ("gemma", "lm-system"),
        ("gemma-b", "models-b"),
    ]
    for doc in rendered:
        assert doc["apiVersion"] == "localmodel.dev/v1alpha1"
        assert doc["spec"] == example["spec"]
        LocalModelSpec.model_validate(doc["spec"])
    bad = run_helm("template", "lm", str(CHART), *set_json({"models": [{"spec": {}}]}), check=False)
    assert bad.returncode != 0 and "name" in bad.stderr


def test_the_router_gets_the_galleries_for_its_console_with_automatic_setup_off() -> None:
    galleries = [{"name": "localai", "url": "https://example.org/index.yaml"}]
    objs = by_kind(render({"operator": {"config": {"galleries": galleries}}}))
    args = _container(objs["Deployment", "lm-localmodel-router"])["args"]
    assert "--gallery=localai=https://example.org/index.yaml" in args
    assert not any(a.startswith("--auto-setup") for a in args)
    parsed = router_main.build_parser().parse_args(args)
    sources = router_main.console_galleries(router_main.auto_setup_settings(parsed))
    assert [(s.name, s.url) for s in sources] == [("localai", "https://example.org/index.yaml")]


def test_admission_policy_follows_the_tenant_policy_and_the_watched_namespaces() -> None:
    name = "lm-system-lm-localmodel-tenant-policy"
    objs = by_kind(render({"watchNamespaces": ["team-a", "team-b"]}))
    policy = objs[("ValidatingAdmissionPolicy", name)]
    messages = " ".join(v.get("message") or v.get("messageExpression") for v in policy["spec"]["validations"])
    for field in ("image", "env may not set", "envFrom", "valueFrom", "serviceAccountName", "existingClaim"):
        assert field in messages, field
    selector = objs[("ValidatingAdmissionPolicyBinding", name)]["spec"]["matchResources"]["namespaceSelector"]
    assert selector["matchExpressions"][0]["values"] == ["team-a", "team-b"]
    # Opened keys drop their rules; trusted tenants, a switched-off policy or Kubernetes < 1.30: none.
    opened = {"tenantPolicy": {"allowEnvFrom": True, "allowServiceAccountName": True}}
    policy = by_kind(render({"operator": {"config": opened}}))[("ValidatingAdmissionPolicy", name)]
    messages = " ".join(v.get("message") or v.get("messageExpression") for v in policy["spec"]["validations"])
    assert "envFrom" not in messages and "serviceAccountName" not in messages and "image" in messages
    for values, extra in (
        ({"operator": {"config": {"tenantPolicy": {"trustedTenants": True}}}}, []),
        ({"admissionPolicy": {"enabled": False}}, []),
        ({}, ["--kube-version", "1.29.0"]),
    ):
        kinds = {kind for kind, _ in by_kind(render(values, *extra))}
        assert "ValidatingAdmissionPolicy" not in kinds and "ValidatingAdmissionPolicyBinding" not in kinds


def test_runtime_auth_gives_the_operator_and_router_the_release_key() -> None:
    objs = by_kind(render())
    secret = objs["Secret", "lm-localmodel-runtime-key"]
    assert len(secret["data"]["key"]) > 40
    config = yaml.safe_load(objs["ConfigMap", "lm-localmodel-operator"]["data"]["operator.yaml"])
    assert config["runtimeKeyFile"] == "/etc/localmodel-runtime-key/key"
    router = objs["Deployment", "lm-localmodel-router"]
    assert "--runtime-key-file=/etc/localmodel-runtime-key/key" in _container(router)["args"]
    for deployment in (router, objs["Deployment", "lm-localmodel-operator"]):
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        assert {"name": "runtime-key", "secret": {"secretName": "lm-localmodel-runtime-key"}} in volumes
    off = by_kind(render({"runtimeAuth": {"enabled": False}}))
    assert ("Secret", "lm-localmodel-runtime-key") not in off
    config = yaml.safe_load(off["ConfigMap", "lm-localmodel-operator"]["data"]["operator.yaml"])
    assert config["runtimeKeyFile"] == ""
    assert not any("runtime-key" in a for a in _container(off["Deployment", "lm-localmodel-router"])["args"])


def test_protected_metrics_pass_the_flag_and_the_scrapers_bearer_secret() -> None:
    values = {
        "router": {"apiKeys": {"existingSecret": "keys", "protectMetrics": True}},
        "serviceMonitor": {"enabled": True, "bearerSecret": {"name": "scrape-key", "key": "token"}},
    }
    objs = by_kind(render(values))
    args = _container(objs["Deployment", "lm-localmodel-router"])["args"]
    assert "--metrics-need-key" in args
    (endpoint,) = objs["ServiceMonitor", "lm-localmodel-router"]["spec"]["endpoints"]
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "scrape-key", "key": "token"},
    }
    assert router_main.build_parser().parse_args(args).metrics_need_key is True
    # Off by default, and meaningless without keys (no flag then).
    plain = by_kind(
        render({"router": {"apiKeys": {"protectMetrics": True}}, "serviceMonitor": {"enabled": True}})
    )
    assert "--metrics-need-key" not in _container(plain["Deployment", "lm-localmodel-router"])["args"]
    assert "authorization" not in plain["ServiceMonitor", "lm-localmodel-router"]["spec"]["endpoints"][0]
