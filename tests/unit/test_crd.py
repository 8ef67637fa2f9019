"""The generated CRD: up to date, structural, and faithful to the schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from localmodel_operator.cli import main as cli_main
from localmodel_operator.crd import build_crd, strict_json_schema
from localmodel_runtime.config import LocalModelSpec, ModelConfig

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "localmodel.yaml"


def openapi_schema() -> dict[str, Any]:
    schema: dict[str, Any] = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_committed_crd_is_up_to_date(tmp_path: Path) -> None:
    out = tmp_path / "crd.yaml"
    assert cli_main(["crd", "-o", str(out)]) == 0
    assert CRD_FILE.read_text() == out.read_text(), "crds/localmodel.yaml is stale: run `make crd`"


def test_names_subresources_and_printer_columns() -> None:
    crd = build_crd()
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "localmodels.localmodel.dev"
    assert spec["group"] == "localmodel.dev" and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "LocalModel" and spec["names"]["shortNames"] == ["lm"]
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.deployment.replicas"
    assert version["subresources"]["scale"]["labelSelectorPath"] == ".status.selector"
    assert "status" in version["subresources"]
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Model", "Backend", "Device", "Ready", "Age"]


def _walk(schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths that break the structural-schema rule: every node typed unless it preserves anything."""
    bad = []
    free = schema.get("x-kubernetes-preserve-unknown-fields") or schema.get("x-kubernetes-int-or-string")
    if "type" not in schema and not free:
        bad.append(path or "<root>")
    for key in ("$ref", "anyOf", "oneOf", "allOf", "definitions", "$defs"):
        if key in schema:
            bad.append(f"{path}:{key}")
    for name, child in schema.get("properties", {}).items():
        bad += _walk(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        bad += _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        bad += _walk(schema["additionalProperties"], f"{path}.*")
    return bad


def test_schema_is_structural() -> None:
    assert _walk(openapi_schema()) == []


def test_every_localai_key_is_in_the_spec_verbatim_and_deployment_is_camel_case() -> None:
    spec = openapi_schema()["properties"]["spec"]
    assert set(ModelConfig.model_fields) <= set(spec["properties"])
    assert spec["x-kubernetes-preserve-unknown-fields"] is True  # unknown LocalAI keys survive
    deployment = spec["properties"]["deployment"]["properties"]
    for key in ("nodeSelector", "priorityClassName", "hfTokenSecretRef", "loadBalancing", "envFrom"):
        assert key in deployment
    assert "minReplicas" in deployment["autoscaling"]["properties"]
    assert "x-kubernetes-preserve-unknown-fields" not in spec["properties"]["deployment"]
    assert set(LocalModelSpec.model_fields) == set(spec["properties"])


def test_descriptions_enums_and_ranges_come_from_the_schema() -> None:
    props = openapi_schema()["properties"]["spec"]["properties"]
    assert "Context window" in props["context_size"]["description"]
    assert props["context_size"]["minimum"] == -1
    assert props["gpu_memory_utilization"]["maximum"] == 1
    assert props["mirostat"]["enum"] == [0, 1, 2]
    assert props["deployment"]["properties"]["device"]["enum"] == ["auto", "cpu", "nvidia", "intel"]
    assert props["parameters"]["properties"]["top_logprobs"]["maximum"] == 20
    assert props["download_files"]["items"]["required"] == ["filename", "uri"]
    rules = openapi_schema()["properties"]["spec"]["x-kubernetes-validations"]
    assert any("backend or parameters.model" in r["message"] for r in rules)
    assert props["download_files"]["items"]["properties"]["filename"]["x-kubernetes-validations"]


def manifest(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "localmodel.dev/v1alpha1",
        "kind": "LocalModel",
        "metadata": {"name": "m"},
        "spec": spec,
    }


def validate(document: dict[str, Any]) -> None:
    jsonschema.validate(document, strict_json_schema())


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"backend": "llama", "threads": "four"}, "threads"),
        ({"backend": "llama", "context_size": -5}, "context_size"),
        ({"backend": "llama", "parameters": {"max_tokens": -1}}, "max_tokens"),
        ({"backend": "llama", "template": "chatml"}, "template"),
        ({"backend": "llama", "stopwords": "x"}, "stopwords"),
        ({"backend": "llama", "deployment": {"replicas": -1}}, "replicas"),
        ({"backend": "llama", "deployment": {"device": "tpu"}}, "device"),
        ({"backend": "llama", "deployment": {"nodeselector": {}}}, "nodeselector"),
        ({"backend": "llama", "download_files": [{"filename": "a"}]}, "uri"),
        ({"backend": "llama cpp"}, "backend"),
    ],
)
def test_the_crd_schema_rejects_bad_specs_naming_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(jsonschema.ValidationError) as info:
        validate(manifest(spec))
    assert field in str(info.value.path) + info.value.message + str(info.value.schema_path)


def test_lenient_scalar_fields_take_numbers_and_booleans() -> None:
    validate(
        manifest({"backend": "llama", "main_gpu": 0, "flash_attention": True, "tensor_split": "0.8,0.2"})
    )
    spec = LocalModelSpec.model_validate({"backend": "llama", "main_gpu": 0, "flash_attention": True})
    assert (spec.main_gpu, spec.flash_attention) == ("0", "true")


def test_committed_crd_parses_as_yaml_11_too() -> None:
    # kubectl reads YAML 1.1; nothing in the file may change type on the way.
    assert yaml.safe_load(CRD_FILE.read_text()) == build_crd()


def test_committed_reference_is_up_to_date(tmp_path: Path) -> None:
    out = tmp_path / "ref.md"
    assert cli_main(["reference", "-o", str(out)]) == 0
    committed = ROOT / "docs" / "localmodel-reference.md"
    assert committed.read_text() == out.read_text(), "docs/localmodel-reference.md is stale: run `make crd`"
    text = out.read_text()
    assert (
        "| `spec.parameters.top_k` | integer |" in text
        and "`spec.deployment.autoscaling.minReplicas`" in text
    )
