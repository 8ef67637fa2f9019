"""Prompt templates: LocalAI's Go `text/template` prompts translated to sandboxed Jinja2, and rendering."""

from .engine import PromptTemplate, RenderError, TemplateError
from .govalues import NO_VALUE, GoExecError, GoStruct
from .prompts import PromptRenderer

__all__ = [
    "NO_VALUE",
    "GoExecError",
    "GoStruct",
    "PromptRenderer",
    "PromptTemplate",
    "RenderError",
    "TemplateError",
]
