"""The model's own chat template (`use_tokenizer_template: true`), rendered like HF's apply_chat_template.

Hugging Face renders with ``ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)``, the
loopcontrols extension, a `tojson` filter that does not HTML-escape, and the globals
`raise_exception` and `strftime_now`; variables are `messages`, `tools`, `add_generation_prompt` and the
special tokens, plus any extra keyword arguments.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2

from .engine import HF_ENV, RenderError, TemplateError


def _token_text(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("content", ""))
    return value if isinstance(value, str) else ""


class TokenizerTemplate:
    def __init__(self, name: str, source: str, bos_token: str = "", eos_token: str = "") -> None:
        self.name = name
        self.bos_token = bos_token
        self.eos_token = eos_token
        try:
            self.template = HF_ENV.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(name, exc.message or str(exc), exc.lineno, None) from exc

    def render(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        kwargs: dict[str, Any],
    ) -> str:
        context: dict[str, Any] = {
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            **kwargs,
            "messages": messages,
            "tools": tools,
            "add_generation_prompt": True,
        }
        try:
            return self.template.render(context)
        except (jinja2.TemplateError, ArithmeticError, LookupError, TypeError, ValueError) as exc:
            raise RenderError(f"{self.name}: {exc}") from exc


def find_tokenizer_template(models_dir: Path, model: str | None) -> tuple[str, str, str, str] | None:
    """`(source, where, bos_token, eos_token)` from a Hugging Face model directory in the models dir.

    Looks next to the model: `<models>/<model>/` when the model is a directory, else the model file's
    directory, then the models directory itself. `chat_template.jinja` (newer transformers) wins over
    `tokenizer_config.json`'s `chat_template` (a string, or a list of named templates: `default`).
    """
    candidates: list[Path] = []
    if model:
        base = (models_dir / model).resolve()
        if base.is_relative_to(models_dir.resolve()):
            candidates += [base, base.parent]
    candidates.append(models_dir)
    for directory in candidates:
        if not directory.is_dir():
            continue
        config_file = directory / "tokenizer_config.json"
        config: dict[str, Any] = {}
        if config_file.is_file():
            try:
                loaded = json.loads(config_file.read_text(encoding="utf-8"))
                config = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                config = {}
        bos, eos = _token_text(config.get("bos_token")), _token_text(config.get("eos_token"))
        jinja_file = directory / "chat_template.jinja"
        if jinja_file.is_file():
            return jinja_file.read_text(encoding="utf-8"), str(jinja_file), bos, eos
        template = config.get("chat_template")
        if isinstance(template, list):
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default")
        if isinstance(template, str):
            return template, str(config_file), bos, eos
    return None
