"""Several choices per request (`n`, and a batch of prompts), as OpenAI and LocalAI answer them, on
a real `localmodel-runtime serve` with the tiny random GGUF: each choice is a generation of its own
(seed + index), whole or streamed with its chunks naming the choice."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support.model_configs import role_lines_template, tiny_gguf_config
from tests.support.runtime_server import RuntimeServer, runtime_server

CONFIG = tiny_gguf_config(context_size=512, template=role_lines_template("A:"))
SAMPLED: dict[str, Any] = {
    "max_tokens": 6,
    "temperature": 2.0,
    "top_k": 200,
    "top_p": 1.0,
    "seed": 11,
    "ignore_eos": True,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[RuntimeServer]:
    with runtime_server(tmp_path_factory.mktemp("choices"), CONFIG, tiny_gguf.parent) as running:
        yield running


def post(server: RuntimeServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.api_url}{path}", json={"model": "tiny", **body}, timeout=60)


def test_whole_completion_with_three_choices(server: RuntimeServer) -> None:
    reply = post(server, "/completions", {"prompt": "choose", "n": 3, **SAMPLED}).json()
    choices = reply["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2]
    assert all(c["finish_reason"] == "length" for c in choices)
    single = post(server, "/completions", {"prompt": "choose", **SAMPLED}).json()
    # One prompt, counted once; every choice's tokens counted.
    assert reply["usage"]["prompt_tokens"] == single["usage"]["prompt_tokens"]
    assert reply["usage"]["completion_tokens"] == 3 * 6


def test_chat_and_edit_with_two_choices_through_the_client(server: RuntimeServer) -> None:
    chat = server.client().chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hi"}],
        n=2,
        max_tokens=5,
        seed=3,
        extra_body={"ignore_eos": True},
    )
    assert [c.index for c in chat.choices] == [0, 1]
    assert all(c.message.role == "assistant" and c.message.content for c in chat.choices)
    assert chat.usage is not None and chat.usage.completion_tokens == 10
    edit = post(server, "/edits", {"instruction": "fix", "input": "teh", "n": 2, **SAMPLED}).json()
    assert [c["index"] for c in edit["choices"]] == [0, 1]


def test_streamed_choices_carry_their_index(server: RuntimeServer) -> None:
    body = {
        "messages": [{"role": "user", "content": "stream two"}],
        "n": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
        **SAMPLED,
    }
    response = post(server, "/chat/completions", body)
    assert response.status_code == 200
    events = response.content.strip().split(b"\n\n")
    assert events[-1] == b"data: [DONE]"
    chunks = [orjson.loads(e.removeprefix(b"data: ")) for e in events[:-1]]
    text: dict[int, str] = defaultdict(str)
    heads, finished = set(), {}
    for chunk in chunks[:-1]:
        (choice,) = chunk["choices"]
        delta = choice["delta"]
        if delta.get("role") == "assistant":
            heads.add(choice["index"])
        text[choice["index"]] += delta.get("content", "")
        if choice["finish_reason"]:
            finished[choice["index"]] = choice["finish_reason"]
    assert heads == {0, 1} and finished == {0: "length", 1: "length"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 12
    # The same choices as the whole response.
    whole = post(server, "/chat/completions", {**body, "stream": False, "stream_options": None}).json()
    assert [c["message"]["content"] for c in whole["choices"]] == [text[0], text[1]]


def test_too_many_choices_is_a_400(server: RuntimeServer) -> None:
    for n in (17, 0):
        response = post(server, "/completions", {"prompt": "x", "n": n})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == "n"


def test_a_prompt_too_long_for_every_choice_is_a_400_before_streaming(server: RuntimeServer) -> None:
    body = {"prompt": "word " * 600, "n": 2, "stream": True, "max_tokens": 4}
    response = post(server, "/completions", body)
    assert response.status_code == 400 and response.json()["error"]["param"] == "prompt"
    assert post(server, "/completions", {"prompt": "still serving", "n": 2, **SAMPLED}).status_code == 200


def test_a_batch_of_prompts_numbers_choices_prompt_by_prompt(server: RuntimeServer) -> None:
    prompts = ["alpha", "beta beta"]
    body = {"prompt": prompts, "n": 2, "echo": True, **SAMPLED}
    reply = post(server, "/completions", body).json()
    choices = reply["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2, 3]
    # Choices 0-1 answer the first prompt, 2-3 the second: echo shows which.
    expected = ["alpha", "alpha", "beta beta", "beta beta"]
    assert all(c["text"].startswith(p) for c, p in zip(choices, expected, strict=True))
    singles = [post(server, "/completions", {"prompt": p, **SAMPLED}).json()["usage"] for p in prompts]
    assert reply["usage"]["prompt_tokens"] == sum(u["prompt_tokens"] for u in singles)  # each prompt once
    assert reply["usage"]["completion_tokens"] == 4 * 6
    stream = server.client().completions.create(
        model="tiny", prompt=prompts, stream=True, max_tokens=4, extra_body={"ignore_eos": True}
    )
    finished = {c.choices[0].index: c.choices[0].finish_reason for c in stream if c.choices[0].finish_reason}
    assert finished == {0: "length", 1: "length"}
