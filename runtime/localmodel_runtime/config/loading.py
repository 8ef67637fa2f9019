"""Loading and validating model configs: YAML files, LocalModel specs, and what is not served."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from ruamel.yaml.nodes import SequenceNode

from localmodel_runtime.errors import LocalModelException

from .backends import canonical_backend, guess_backend
from .deployment import DeploymentSpec
from .model import NOT_SERVED, SERVED_BY, ModelConfig
from .yaml12 import DecodeProblem, TypedDecoder, YAMLDecodeError, compose_documents


class ModelConfigError(LocalModelException, ValueError):
    """A model config that cannot be used; the message names the source, the field and the problem."""

    def __init__(self, source: str, problems: Iterable[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(f"{source}: " + "; ".join(self.problems))


class LocalModelSpec(ModelConfig):
    """`LocalModel.spec`: a LocalAI model config plus Kubernetes placement under `deployment`."""

    deployment: DeploymentSpec | None = Field(default=None, description="Kubernetes placement (camelCase).")

    def model_config_only(self) -> ModelConfig:
        """The LocalAI part, as the runtime loads it (without `deployment`)."""
        return ModelConfig.model_validate(self.model_dump(exclude={"deployment"}, exclude_none=True))


def validation_problems(error: ValidationError) -> list[str]:
    """Turn pydantic's errors into `field.path: message` lines a user can act on."""
    problems = []
    for item in error.errors(include_url=False):
        path = ".".join(str(p) for p in item["loc"] if not str(p).startswith("function-after"))
        message = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"{path}: {message}" if path else message)
    return problems


def parse_model_configs(text: str, source: str = "<string>") -> list[ModelConfig]:
    """Parse one LocalAI model YAML file: a mapping, or a list of mappings (LocalAI's list files)."""
    return _parse(text, source)


def parse_local_model_spec(data: dict[str, Any], source: str = "<spec>") -> LocalModelSpec:
    """Validate a LocalModel `spec` that arrives as JSON (from the Kubernetes API)."""
    try:
        return LocalModelSpec.model_validate(data)
    except ValidationError as exc:
        raise ModelConfigError(source, validation_problems(exc)) from exc


def parse_deployment_spec(data: Any, source: str = "spec.deployment") -> DeploymentSpec:
    """Validate a `spec.deployment` on its own: what the router reads of a LocalModel."""
    try:
        return DeploymentSpec.model_validate(data or {})
    except ValidationError as exc:
        raise ModelConfigError(source, validation_problems(exc)) from exc


def _parse(text: str, source: str) -> list[ModelConfig]:
    try:
        documents = compose_documents(text)
    except YAMLDecodeError as exc:
        raise ModelConfigError(source, [str(p) for p in exc.problems]) from exc
    if len(documents) > 1:
        raise ModelConfigError(source, ["a model file holds one YAML document (a mapping or a list)"])
    if not documents:
        raise ModelConfigError(source, ["the file is empty"])
    decoder = TypedDecoder()
    root = documents[0]
    is_list = isinstance(root, SequenceNode)
    try:
        data = decoder.decode(root, list[ModelConfig]) if is_list else [decoder.decode(root, ModelConfig)]
    except YAMLDecodeError as exc:  # duplicate keys stop the walk at once, as in yaml.v3
        decoder.problems.extend(exc.problems)
    if decoder.problems:
        raise ModelConfigError(source, [str(p) for p in decoder.problems])
    configs = []
    for index, item in enumerate(data or []):
        where = f"{source}[{index}]" if is_list else source
        if not isinstance(item, dict):
            raise ModelConfigError(where, ["each entry must be a mapping"])
        try:
            configs.append(ModelConfig.model_validate(item))
        except ValidationError as exc:
            raise ModelConfigError(where, validation_problems(exc)) from exc
    return configs


def load_model_configs(path: Path) -> list[ModelConfig]:
    """Read a LocalAI model YAML file from disk (see :func:`parse_model_configs`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelConfigError(str(path), [f"cannot read: {exc}"]) from exc
    return parse_model_configs(text, str(path))


def load_model_config(path: Path) -> ModelConfig:
    """Read a file that must hold exactly one model config (what a runtime pod serves)."""
    configs = load_model_configs(path)
    if len(configs) != 1:
        raise ModelConfigError(str(path), [f"expected one model config, found {len(configs)}"])
    return configs[0]


def unknown_keys(block: BaseModel, prefix: str = "") -> list[str]:
    """Dotted paths of keys that LocalAI's schema does not have (kept, but nobody reads them)."""
    found = [f"{prefix}{key}" for key in (block.model_extra or {})]
    for name in type(block).model_fields:
        value = getattr(block, name)
        children = value if isinstance(value, list) else [value]
        for i, child in enumerate(children):
            if isinstance(child, BaseModel):
                suffix = f"[{i}]" if isinstance(value, list) else ""
                found.extend(unknown_keys(child, f"{prefix}{name}{suffix}."))
    return found


def unsupported_keys(config: ModelConfig) -> list[str]:
    """Every key that is set but that localmodel does not act on: unknown keys, NOT_SERVED ones, and
    SERVED_BY ones on a model of another backend."""
    found = unknown_keys(config)
    backend = canonical_backend(config.backend) if config.backend else guess_backend(config.model_file)
    elsewhere = {key for key, served in SERVED_BY.items() if backend is not None and backend not in served}
    for path in sorted(NOT_SERVED | elsewhere):
        value: Any = config
        for part in path.split("."):
            value = getattr(value, part, None) if value is not None else None
        if value not in (None, [], {}):
            found.append(path)
    return sorted(set(found) - {"deployment"})


__all__ = [
    "DecodeProblem",
    "LocalModelSpec",
    "ModelConfigError",
    "load_model_config",
    "load_model_configs",
    "parse_deployment_spec",
    "parse_local_model_spec",
    "parse_model_configs",
    "unknown_keys",
    "unsupported_keys",
    "validation_problems",
]
