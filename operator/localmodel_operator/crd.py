"""Generate the LocalModel CustomResourceDefinition from the schema in `localmodel_runtime.config`.

The pydantic models are the single source of truth; this module turns their field types into a
*structural* OpenAPI v3 schema (every node typed, no `$ref`), with descriptions from the field docs,
enums and ranges where LocalAI has them, and CEL rules for what a JSON schema cannot say. Unknown LocalAI
keys are preserved (`x-kubernetes-preserve-unknown-fields`) because LocalAI ignores them instead of
failing, and real files carry legacy keys; `spec.deployment` is ours and strict.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Le, MaxLen
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from localmodel_runtime.config import LocalModelSpec
from localmodel_runtime.resource import GROUP, KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION

JSONSchema = dict[str, Any]

# String fields that real LocalAI files commonly give as numbers or booleans (`main_gpu: 0`,
# `flash_attention: true`): the CRD takes any scalar there and the operator keeps its text, exactly as
# LocalAI's decoder does, so such a file can be pasted under `spec:` unchanged.
ANY_SCALAR_FIELDS = {"main_gpu", "tensor_split", "flash_attention"}

_RELATIVE_PATH_RULE = {
    "rule": "!self.startsWith('/') && !self.contains('..')",
    "message": "must be relative to the models directory and must not contain '..'",
}
# CEL rules per dotted field path (relative to spec). Strings checked by CEL get a maxLength so the API
# server can bound the rule's cost.
FIELD_RULES: dict[str, list[dict[str, str]]] = {
    "parameters.model": [_RELATIVE_PATH_RULE],
    "mmproj": [_RELATIVE_PATH_RULE],
    "draft_model": [_RELATIVE_PATH_RULE],
    "download_files[].filename": [_RELATIVE_PATH_RULE],
}
PATTERNS: dict[str, str] = {"backend": r"^[a-zA-Z0-9._-]*$", "download_files[].sha256": r"^[a-fA-F0-9]{64}$"}
SPEC_RULES = [
    {
        "rule": "(has(self.backend) && self.backend != '') || "
        "(has(self.parameters) && has(self.parameters.model) && self.parameters.model != '')",
        "message": "set backend or parameters.model: with neither there is no model to serve",
    },
]
MODEL_RULES: dict[str, list[dict[str, str]]] = {
    "Autoscaling": [
        {
            "rule": "!has(self.minReplicas) || !has(self.maxReplicas) "
            "|| self.minReplicas <= self.maxReplicas",
            "message": "autoscaling.minReplicas must not exceed maxReplicas",
        }
    ],
    "Storage": [
        {
            "rule": "!(has(self.existingClaim) && has(self.size))",
            "message": "storage.existingClaim and storage.size are mutually exclusive",
        }
    ],
}
MAX_STRING = 4096
MAX_FILES = 256


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """Strip Optional and Annotated; return the bare type and the collected constraints."""
    metadata: list[Any] = []
    while True:
        origin = get_origin(annotation)
        if origin is typing.Annotated:
            args = get_args(annotation)
            annotation, metadata = args[0], [*metadata, *args[1:]]
        elif origin in (Union, types.UnionType):
            options = [a for a in get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return options, metadata
            annotation = options[0]
        else:
            return annotation, metadata


def _constraints(metadata: list[Any]) -> JSONSchema:
    out: JSONSchema = {}
    for item in metadata:
        if isinstance(item, Ge):
            out["minimum"] = item.ge
        elif isinstance(item, Le):
            out["maximum"] = item.le
        elif isinstance(item, MaxLen):
            out["maxLength"] = item.max_length
    return out


def type_schema(annotation: Any, path: str) -> JSONSchema:
    """The structural schema of one Python type."""
    bare, metadata = _unwrap(annotation)
    if isinstance(bare, list):  # a real union
        names = {get_origin(t) or t for t in bare}
        if names <= {int, str}:
            return {"x-kubernetes-int-or-string": True}
        return {"x-kubernetes-preserve-unknown-fields": True}
    origin = get_origin(bare)
    if bare is Any:
        return {"x-kubernetes-preserve-unknown-fields": True}
    if isinstance(bare, type) and issubclass(bare, BaseModel):
        return model_schema(bare, path)
    if origin is Literal:
        values = list(get_args(bare))
        kind = "integer" if all(isinstance(v, int) for v in values) else "string"
        return {"type": kind, "enum": values}
    if origin is list:
        (item,) = get_args(bare)
        return {"type": "array", "items": type_schema(item, f"{path}[]")}
    if origin is dict or bare is dict:
        args = get_args(bare)
        value = args[1] if args else Any
        if value is Any:
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        return {"type": "object", "additionalProperties": type_schema(value, f"{path}.*")}
    simple = {str: "string", bool: "boolean", int: "integer", float: "number"}
    if bare in simple:
        return {"type": simple[bare], **_constraints(metadata)}
    raise TypeError(f"no CRD schema for {path}: {bare!r}")


def field_schema(name: str, info: FieldInfo, path: str) -> JSONSchema:
    if name in ANY_SCALAR_FIELDS and "." not in path:
        schema: JSONSchema = {"x-kubernetes-preserve-unknown-fields": True}
    else:
        schema = type_schema(info.annotation, path)
    if info.description:  # the field's own words win over its type's docstring
        schema = {"description": info.description, **{k: v for k, v in schema.items() if k != "description"}}
    if path in PATTERNS:
        schema["pattern"] = PATTERNS[path]
    if path in FIELD_RULES:
        schema["maxLength"] = MAX_STRING
        schema["x-kubernetes-validations"] = FIELD_RULES[path]
    if path == "download_files":
        schema["maxItems"] = MAX_FILES
    return schema


def model_schema(model: type[BaseModel], path: str = "") -> JSONSchema:
    properties: JSONSchema = {}
    required: list[str] = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        properties[key] = field_schema(name, info, f"{path}.{key}" if path else key)
        if info.is_required():
            required.append(key)
    schema: JSONSchema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if model.model_config.get("extra") == "allow":
        schema["x-kubernetes-preserve-unknown-fields"] = True
    if model.__name__ in MODEL_RULES:
        schema["x-kubernetes-validations"] = MODEL_RULES[model.__name__]
    if model.__doc__ and path:
        schema = {"description": model.__doc__.strip().splitlines()[0], **schema}
    return schema


def _condition_schema() -> JSONSchema:
    return {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": {"type": "string", "description": "Ready, Progressing or Degraded."},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string", "description": "One CamelCase word, e.g. Available, InvalidSpec."},
            "message": {"type": "string", "description": "What happened, for people."},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
            "observedGeneration": {"type": "integer"},
        },
    }


def status_schema() -> JSONSchema:
    text = {"type": "string"}
    return {
        "type": "object",
        "description": "What the operator observed.",
        "properties": {
            "observedGeneration": {"type": "integer", "description": "The generation last reconciled."},
            "conditions": {
                "type": "array",
                "items": _condition_schema(),
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "replicas": {"type": "integer", "description": "Pods of the model's Deployment."},
            "readyReplicas": {"type": "integer", "description": "Pods ready to serve."},
            "ready": {**text, "description": "readyReplicas/replicas, for kubectl get."},
            "selector": {**text, "description": "Label selector of the pods (scale subresource)."},
            "modelName": {**text, "description": "The name clients use in the API's model field."},
            "backend": {**text, "description": "The backend serving the model."},
            "device": {**text, "description": "cpu, nvidia or intel: what the pods were given."},
            "image": {**text, "description": "The runtime image."},
            "endpoint": {**text, "description": "In-cluster URL of the model's Service."},
            "unsupported": {
                "type": "array",
                "items": text,
                "description": "Keys accepted and kept but not acted on by localmodel.",
            },
        },
    }


def spec_schema() -> JSONSchema:
    schema = model_schema(LocalModelSpec)
    schema["description"] = (
        "A LocalAI model configuration, key for key (snake_case, verbatim), plus Kubernetes placement "
        "under `deployment` (camelCase)."
    )
    schema["x-kubernetes-validations"] = SPEC_RULES
    return schema


def build_crd() -> dict[str, Any]:
    """The whole CustomResourceDefinition manifest."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "categories": ["all", "localmodel"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.deployment.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    # The operator finds the LocalModels that ask for one API name by this field
                    # (kube.list_name_claimants) instead of listing them all for every reconcile.
                    "selectableFields": [{"jsonPath": ".spec.name"}],
                    "additionalPrinterColumns": [
                        {"name": "Model", "type": "string", "jsonPath": ".status.modelName"},
                        {"name": "Backend", "type": "string", "jsonPath": ".status.backend"},
                        {"name": "Device", "type": "string", "jsonPath": ".status.device"},
                        {"name": "Ready", "type": "string", "jsonPath": ".status.ready"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A model served by localmodel, described as LocalAI describes it.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }


def strict_json_schema(schema: JSONSchema | None = None) -> JSONSchema:
    """The CRD's schema as a plain JSON Schema that also rejects unknown fields where the API server's
    strict field validation would (kubectl's default), for checking manifests without a cluster."""
    if schema is None:
        schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    out = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if schema.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if "properties" in schema:
        out["properties"] = {k: strict_json_schema(v) for k, v in schema["properties"].items()}
        if not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            out[key] = strict_json_schema(schema[key])
    return out
