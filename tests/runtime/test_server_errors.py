"""Bad requests get OpenAI's error body and status, never a 500 with a traceback, and the server keeps
serving after each of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.runtime_server import RuntimeServer, runtime_server

CONTEXT = 128
CONFIG: dict[str, Any] = {
    "name": "tiny",
    "backend": "llama",
    "context_size": CONTEXT,
    "parameters": {"model": "tiny.gguf"},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[RuntimeServer]:
    args = ["--max-body-bytes", "65536"]
    with runtime_server(tmp_path_factory.mktemp("errors"), CONFIG, tiny_gguf.parent, args=args) as running:
        yield running


def post(server: RuntimeServer, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{server.api_url}{path}", timeout=30, **kwargs)


def assert_error(
    response: httpx.Response, status: int, param: str | None = None, code: str | None = None
) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and "Traceback" not in error["message"]
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code


def still_serving(server: RuntimeServer) -> None:
    reply = server.client().completions.create(model="tiny", prompt="ok", max_tokens=2)
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_malformed_json(server: RuntimeServer) -> None:
    for body in (b"{not json", b"", b'{"model": "tiny",', b"[1, 2]", b"\xff\xfe"):
        response = post(
            server, "/chat/completions", content=body, headers={"content-type": "application/json"}
        )
        assert_error(response, 400)
        assert response.json()["error"]["type"] == "invalid_request_error"
    still_serving(server)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": "hi"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"content": "no role"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": "12"}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": 5}, "temperature"),
        ({"messages": [{"role": "user", "content": "x"}], "top_p": 1.5}, "top_p"),
        ({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": -3}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 17}, "n"),
        ({"messages": [{"role": "user", "content": "x"}], "logit_bias": {"abc": 1}}, "logit_bias"),
    ],
)
def test_invalid_chat_parameters(server: RuntimeServer, body: dict[str, Any], param: str) -> None:
    assert_error(post(server, "/chat/completions", json={"model": "tiny", **body}), 400, param)


def test_missing_required_parameter(server: RuntimeServer) -> None:
    assert_error(
        post(server, "/chat/completions", json={"model": "tiny"}),
        400,
        "messages",
        "missing_required_parameter",
    )
    assert_error(post(server, "/edits", json={"input": "x"}), 400, "instruction")


def test_max_tokens_below_one_with_the_client(server: RuntimeServer) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        server.client().completions.create(model="tiny", prompt="x", max_tokens=0)
    assert raised.value.param == "max_tokens" and raised.value.status_code == 400


def test_unknown_model(server: RuntimeServer) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        server.client().chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "x"}])
    assert raised.value.code == "model_not_found" and raised.value.param == "model"
    assert_error(
        post(server, "/completions", json={"model": "other", "prompt": "x"}), 404, "model", "model_not_found"
    )


def test_prompt_longer_than_context(server: RuntimeServer) -> None:
    long_text = "x" * (CONTEXT * 2)
    with pytest.raises(openai.BadRequestError) as raised:
        server.client().chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": long_text}]
        )
    assert raised.value.code == "context_length_exceeded" and raised.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as raised:
        server.client().completions.create(model="tiny", prompt=long_text, stream=True)
    assert raised.value.code == "context_length_exceeded" and raised.value.param == "prompt"
    still_serving(server)


def test_body_too_large(server: RuntimeServer) -> None:
    huge = {"model": "tiny", "prompt": "x" * 100_000}
    assert_error(post(server, "/completions", json=huge), 413)

    def chunks() -> Iterator[bytes]:  # no content-length: the cap applies while reading
        yield b'{"model": "tiny", "prompt": "'
        for _ in range(40):
            yield b"y" * 4096
        yield b'"}'

    assert_error(post(server, "/completions", content=chunks()), 413)
    still_serving(server)


def test_embeddings_not_served(server: RuntimeServer) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        server.client().embeddings.create(model="tiny", input="x")
    assert raised.value.code == "unsupported_operation"


def test_unsupported_requests_are_clear(server: RuntimeServer) -> None:
    assert_error(post(server, "/completions", json={"prompt": []}), 400, "prompt")
    assert_error(post(server, "/completions", json={"prompt": ["a"] * 9, "n": 2}), 400, "prompt")
    assert_error(post(server, "/completions", json={"prompt": [1, 2, 3]}), 400, "prompt")
    assert_error(post(server, "/completions", json={"prompt": "a", "logprobs": 2}), 400, "logprobs")


def test_unknown_route_and_method(server: RuntimeServer) -> None:
    assert_error(httpx.get(f"{server.api_url}/nothing-here"), 404)
    assert_error(httpx.get(f"{server.api_url}/chat/completions"), 405)
    still_serving(server)
