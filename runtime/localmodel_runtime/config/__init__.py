"""The model configuration: LocalAI's model YAML schema, typed, and how to load it.

This package is the single source of truth for a model's configuration: the runtime loads it, the
operator renders it, the CRD is generated from it and the importer converts files through it.
"""

from .backends import BACKEND_ALIASES, BACKEND_EXTRAS, canonical_backend, guess_backend
from .blocks import (
    DownloadFile,
    FunctionsConfig,
    GrammarConfig,
    Parameters,
    ReasoningConfig,
    TemplateConfig,
)
from .deployment import DeploymentSpec
from .loading import (
    LocalModelSpec,
    ModelConfigError,
    load_model_config,
    load_model_configs,
    parse_deployment_spec,
    parse_local_model_spec,
    parse_model_configs,
    unknown_keys,
    unsupported_keys,
)
from .model import NOT_SERVED, SERVED_BY, ModelConfig

__all__ = [
    "BACKEND_ALIASES",
    "BACKEND_EXTRAS",
    "NOT_SERVED",
    "SERVED_BY",
    "DeploymentSpec",
    "DownloadFile",
    "FunctionsConfig",
    "GrammarConfig",
    "LocalModelSpec",
    "ModelConfig",
    "ModelConfigError",
    "Parameters",
    "ReasoningConfig",
    "TemplateConfig",
    "canonical_backend",
    "guess_backend",
    "load_model_config",
    "load_model_configs",
    "parse_deployment_spec",
    "parse_local_model_spec",
    "parse_model_configs",
    "unknown_keys",
    "unsupported_keys",
]
