"""Reranking (`reranking: true`) on the llama backend: a tiny generated Qwen3-style reranker
(tests/support/tiny_reranker.py) through the backend, and `/v1/rerank` (LocalAI's Jina shape) through the
runtime server and the router, over raw HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from localmodel_runtime.backends.base import ModelLoadError
from localmodel_runtime.backends.llama import LlamaBackend
from localmodel_runtime.backends.llama.pooled import rerank_tokens
from localmodel_runtime.config import ModelConfig, unsupported_keys
from tests.support.backend_checks import assert_refuses_to_rerank
from tests.support.router_fixtures import runtime_or_router
from tests.support.runtime_server import RuntimeServer, runtime_server
from tests.support.tiny_reranker import write_tiny_reranker

QUERY = "where did the cat sit?"
DOCUMENTS = [
    "The cat sat on the mat.",
    "Dogs bark at the postman.",
    "",
    "A long text about weather, trains and the price of bread. " * 4,
    "The cat sat on the mat.",
]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Path:
    directory = tmp_path_factory.mktemp("rerank-models")
    write_tiny_reranker(directory / "reranker.gguf")
    (directory / "tiny.gguf").symlink_to(tiny_gguf)
    return directory


def config(model: str = "reranker.gguf", **keys: Any) -> ModelConfig:
    base = {"name": "reranker", "backend": "llama", "parameters": {"model": model}}
    return ModelConfig.model_validate({**base, "reranking": True, **keys})


async def scores(models: Path, query: str, documents: list[str]) -> list[float]:
    backend = LlamaBackend(config(), models)
    await backend.load()
    try:
        assert backend.capabilities().rerank
        values, tokens = await backend.rerank(query, documents)
        assert tokens > len(documents)
        return values
    finally:
        await backend.close()


async def test_a_reranker_scores_each_document(models: Path) -> None:
    values = await scores(models, QUERY, DOCUMENTS)
    assert len(values) == len(DOCUMENTS)
    # The two-label head's softmax: probabilities, and the same pair scores the same wherever it stands.
    assert all(0.0 < v < 1.0 for v in values)
    assert values[0] == pytest.approx(values[4], abs=1e-5)
    assert len({round(v, 4) for v in values[:4]}) == 4
    alone = await scores(models, QUERY, [DOCUMENTS[1]])
    assert alone[0] == pytest.approx(values[1], abs=1e-4)
    assert (await scores(models, "something else entirely", [DOCUMENTS[0]]))[0] != pytest.approx(values[0])


async def test_reranking_on_a_model_without_a_ranking_head_fails_the_load(models: Path) -> None:
    backend = LlamaBackend(config("tiny.gguf"), models)
    with pytest.raises(ModelLoadError, match=r"tiny.gguf is not a reranking model.*llama.pooling_type"):
        await backend.load()
    await backend.close()


async def test_a_model_loaded_without_reranking_refuses_to_rerank(models: Path) -> None:
    await assert_refuses_to_rerank(LlamaBackend(config(reranking=False), models), QUERY, DOCUMENTS)


def test_pairs_without_a_template_are_laid_out_as_llama_server_does() -> None:
    def tokenize(text: str, add_special: bool) -> list[int]:
        return [ord(c) for c in text] + ([999] if add_special else [])

    special = {"bos": 1, "eos": 2, "sep": 3}
    assert rerank_tokens(tokenize, special, None, "q", "dd") == [1, ord("q"), 2, 3, ord("d"), ord("d"), 2]
    assert rerank_tokens(tokenize, {"bos": -1, "eos": -1, "sep": -1}, None, "q", "d") == [ord("q"), ord("d")]
    assert rerank_tokens(tokenize, special, "<{query}|{document}>", "q", "d") == [ord(c) for c in "<q|d>"]


def test_reranking_is_served_by_llama_and_transformers_only() -> None:
    assert unsupported_keys(config()) == []
    hf = ModelConfig.model_validate(
        {"backend": "transformers", "reranking": True, "parameters": {"model": "r"}}
    )
    assert unsupported_keys(hf) == []
    vllm = ModelConfig.model_validate(
        {"backend": "vllm", "reranking": True, "parameters": {"model": "org/r"}}
    )
    assert unsupported_keys(vllm) == ["reranking"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, models: Path) -> Iterator[RuntimeServer]:
    spec = {
        "name": "reranker",
        "backend": "llama",
        "reranking": True,
        "parameters": {"model": "reranker.gguf"},
    }
    with runtime_server(tmp_path_factory.mktemp("rerank"), spec, models) as running:
        yield running


@pytest.fixture(params=["runtime", "router"])
def base_url(request: pytest.FixtureRequest, server: RuntimeServer) -> Iterator[str]:
    with runtime_or_router(request.param, server.base_url, "reranker") as url:
        yield url


def post(url: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(url, json=body, headers={"Authorization": "Bearer test"}, timeout=60)


async def test_rerank_answers_in_jinas_shape_most_relevant_first(models: Path, base_url: str) -> None:
    expected = await scores(models, QUERY, DOCUMENTS)
    reply = post(f"{base_url}/v1/rerank", {"model": "reranker", "query": QUERY, "documents": DOCUMENTS})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"] == "reranker"
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > len(DOCUMENTS)
    results = body["results"]
    assert sorted(r["index"] for r in results) == list(range(len(DOCUMENTS)))
    assert [r["relevance_score"] for r in results] == sorted(
        (r["relevance_score"] for r in results), reverse=True
    )
    for result in results:
        assert result["document"] == {"text": DOCUMENTS[result["index"]]}
        assert result["relevance_score"] == pytest.approx(expected[result["index"]], abs=1e-4)


def test_rerank_without_v1_with_top_n_and_document_objects(base_url: str) -> None:
    documents = [{"text": d} for d in DOCUMENTS[:4]]
    whole = post(f"{base_url}/rerank", {"model": "reranker", "query": QUERY, "documents": documents}).json()
    top = post(
        f"{base_url}/rerank",
        {"model": "reranker", "query": QUERY, "documents": documents, "top_n": 2, "return_documents": False},
    ).json()
    assert [r["index"] for r in top["results"]] == [r["index"] for r in whole["results"][:2]]
    assert all("document" not in r for r in top["results"])


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"query": QUERY, "documents": []}, "documents"),
        ({"query": QUERY, "documents": ["a"], "top_n": 0}, "top_n"),
        ({"documents": ["a"]}, "query"),
        ({"query": QUERY, "documents": [{"title": "no text"}]}, "documents"),
        ({"query": QUERY, "documents": ["x" * 600]}, "documents[0]"),
    ],
)
def test_bad_rerank_requests_are_openai_shaped_400s(base_url: str, body: dict[str, Any], param: str) -> None:
    reply = post(f"{base_url}/v1/rerank", {"model": "reranker", **body})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] is not None and error["param"].startswith(param), error
    assert error["type"] == "invalid_request_error"


def test_a_model_that_cannot_rerank_answers_400(tmp_path: Path, models: Path) -> None:
    spec = {"name": "tiny", "backend": "llama", "context_size": 256, "parameters": {"model": "tiny.gguf"}}
    with (
        runtime_server(tmp_path, spec, models) as running,
        runtime_or_router("router", running.base_url, "tiny") as url,
    ):
        reply = post(f"{url}/v1/rerank", {"model": "tiny", "query": QUERY, "documents": ["a"]})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert (error["param"], error["code"]) == ("model", "unsupported_operation")
    assert "reranking: true" in error["message"]
