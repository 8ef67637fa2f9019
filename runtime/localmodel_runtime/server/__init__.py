"""The OpenAI-compatible HTTP server of one model (LocalAI's API, vLLM's metric names)."""

from .app import Fatal, ServerSettings, create_app, served_name

__all__ = ["Fatal", "ServerSettings", "create_app", "served_name"]
