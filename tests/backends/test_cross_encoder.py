"""Reranking (`reranking: true`) in the transformers backend: a tiny random BERT sequence classifier, made
here and loaded as a sentence-transformers CrossEncoder. Needs the backends environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from localmodel_runtime.backends.transformers_backend import TransformersBackend
from localmodel_runtime.config import ModelConfig

pytestmark = pytest.mark.backends

import torch  # noqa: E402
from sentence_transformers import CrossEncoder  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification  # noqa: E402

from tests.support.backend_checks import assert_refuses_to_rerank  # noqa: E402
from tests.support.tiny_hf import train_tokenizer  # noqa: E402

QUERY = "where is the fox?"
DOCUMENTS = ["the quick brown fox jumps", "hello world", "a b c d e f", "the quick brown fox jumps"]


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    tokenizer = train_tokenizer()
    torch.manual_seed(0)
    model = BertForSequenceClassification(
        BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=128,
            num_labels=1,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    model.save_pretrained(root / "reranker")
    tokenizer.save_pretrained(root / "reranker")
    return root


async def test_a_cross_encoder_scores_query_document_pairs(cross_encoder: Path) -> None:
    config = ModelConfig.model_validate(
        {
            "name": "r",
            "backend": "transformers",
            "reranking": True,
            "threads": 1,
            "parameters": {"model": "reranker"},
        }
    )
    backend = TransformersBackend(config, cross_encoder)
    await backend.load()
    try:
        caps = backend.capabilities()
        assert caps.rerank and not caps.completion and not caps.embeddings
        scores, tokens = await backend.rerank(QUERY, DOCUMENTS)
        expected = CrossEncoder(str(cross_encoder / "reranker"), device="cpu").predict(
            [(QUERY, d) for d in DOCUMENTS], convert_to_numpy=True
        )
        assert scores == pytest.approx([float(v) for v in expected], abs=1e-5)
        assert scores[0] == pytest.approx(scores[3]) and len(set(scores[:3])) == 3
        assert tokens > len(DOCUMENTS)
    finally:
        await backend.close()


async def test_a_model_loaded_without_reranking_refuses_to_rerank(cross_encoder: Path) -> None:
    config = ModelConfig.model_validate(
        {"name": "r", "backend": "transformers", "threads": 1, "parameters": {"model": "reranker"}}
    )
    await assert_refuses_to_rerank(TransformersBackend(config, cross_encoder), QUERY, DOCUMENTS)
