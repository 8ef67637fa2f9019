"""Where a Python-library backend finds its weights: the models directory, or a Hugging Face repository id."""

from __future__ import annotations

import re
from pathlib import Path

from ...config import ModelConfig
from ..base import ModelLoadError


def model_location(config: ModelConfig, models_dir: Path, *, allow_repo_id: bool = True) -> str:
    """`parameters.model` as a path in the models directory, or a Hugging Face repository id.

    A name that exists under the models directory is used from there; `owner/name` that does not is
    passed on as a repository id (the library resolves it from its cache); anything else is an error.
    """
    model = config.model_file
    if not model:
        raise ModelLoadError(
            "parameters.model is not set: name a model directory in the models directory"
            + (" or a Hugging Face repository id" if allow_repo_id else "")
        )
    local = models_dir / model
    if local.exists():
        return str(local)
    if allow_repo_id and re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", model) and ".." not in model:
        return model
    raise ModelLoadError(f"model {local} does not exist (is `parameters.model` right?)")
