"""A runtime with the operator's token answers only callers presenting it (the router); its probes stay
open, and `/metrics` needs a token only when one is set for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from localmodel_runtime.resource.runtime_token import METRICS_TOKEN_ENV, TOKEN_ENV, runtime_token
from tests.support.runtime_server import RuntimeServer, runtime_server

TOKEN = runtime_token(b"release-key", "team-a", "tiny")
CONFIG = {"name": "tiny", "backend": "llama", "context_size": 256, "parameters": {"model": "tiny.gguf"}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[RuntimeServer]:
    env = {TOKEN_ENV: TOKEN, METRICS_TOKEN_ENV: "metrics-key"}
    with runtime_server(tmp_path_factory.mktemp("token"), CONFIG, tiny_gguf.parent, env=env) as running:
        yield running


def test_api_paths_need_the_token_and_answer_401_in_openais_shape(server: RuntimeServer) -> None:
    body = {"model": "tiny", "prompt": "hi", "max_tokens": 2}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        for method, path, payload in (("POST", "/v1/completions", body), ("GET", "/v1/models", None)):
            response = httpx.request(
                method, server.base_url + path, json=payload, headers=headers, timeout=30
            )
            assert response.status_code == 401, (path, headers, response.text)
            error = response.json()["error"]
            assert error["code"] == "invalid_api_key" and error["type"] == "authentication_error"
            assert "only the localmodel router" in error["message"]
    other = runtime_token(b"release-key", "team-b", "tiny")  # another model's token opens nothing here
    denied = httpx.get(
        server.base_url + "/v1/models", headers={"Authorization": f"Bearer {other}"}, timeout=30
    )
    assert denied.status_code == 401
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as client:
        granted = client.post("/v1/completions", json=body)
    assert granted.status_code == 200, granted.text
    assert granted.json()["choices"][0]["text"] is not None


def test_probes_stay_open_and_metrics_take_their_own_key(server: RuntimeServer) -> None:
    for path in ("/healthz", "/readyz"):
        assert httpx.get(server.base_url + path, timeout=10).status_code == 200
    assert httpx.get(server.base_url + "/metrics", timeout=10).status_code == 401
    for key in ("metrics-key", TOKEN):
        response = httpx.get(
            server.base_url + "/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        assert response.status_code == 200 and "localmodel" in response.text
