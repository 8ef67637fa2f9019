"""Backend `llama`: GGUF models through llama-cpp-python's low-level API.

backend.py loads the model and maps the LocalAI keys; batch.py runs several sequences in one batch;
sampling.py builds the sampler chain; spec.py drafts tokens for speculative decoding; lora.py applies
adapters; vision.py reads images through the multimodal projector (`mmproj`); slot_file.py keeps a slot's
KV on disk (`prompt_cache_path`); pooled.py serves embeddings and reranking; ggml.py explains pre-GGUF
files.
"""

from .backend import LlamaBackend

__all__ = ["LlamaBackend"]
