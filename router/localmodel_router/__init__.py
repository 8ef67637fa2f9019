"""The OpenAI-compatible router, and local mode (`localmodel up`)."""
