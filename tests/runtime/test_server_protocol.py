"""The OpenAI protocol of a real `localmodel-runtime serve` on the tiny random GGUF, through the `openai`
client and, where the exact bytes matter (SSE framing), through httpx."""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support.runtime_server import RuntimeServer, runtime_server

CHAT_MESSAGE = '{{if eq .RoleName "user"}}U: {{.Content}}{{else}}S: {{.Content}}{{end}}'
CONFIG: dict[str, Any] = {
    "name": "tiny",
    "backend": "llama",
    "context_size": 512,
    "embeddings": True,
    "parameters": {"model": "tiny.gguf"},
    "template": {
        "chat_message": CHAT_MESSAGE,
        "chat": "{{.Input}}\nA:",
        "completion": "{{.Input}}",
        "edit": "Instruction: {{.Instruction}}\nInput: {{.Input}}\nOutput:",
    },
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[RuntimeServer]:
    with runtime_server(tmp_path_factory.mktemp("protocol"), CONFIG, tiny_gguf.parent) as running:
        yield running


def greedy(server: RuntimeServer, prompt: str, max_tokens: int = 24, **extra: Any) -> Any:
    return server.client().completions.create(
        model="tiny", prompt=prompt, max_tokens=max_tokens, temperature=0, **extra
    )


def sse_events(body: bytes) -> list[bytes]:
    """The data payloads of an SSE body; asserts OpenAI's framing (`data: ...` then a blank line)."""
    assert body.endswith(b"\n\n")
    events = body[:-2].split(b"\n\n")
    assert all(e.startswith(b"data: ") and b"\n" not in e for e in events), body
    return [e.removeprefix(b"data: ") for e in events]


def test_models_list(server: RuntimeServer) -> None:
    models = server.client().models.list()
    assert [m.id for m in models.data] == ["tiny"]
    assert models.data[0].object == "model"
    assert server.client().models.retrieve("tiny").id == "tiny"


def test_health_and_readiness(server: RuntimeServer) -> None:
    assert httpx.get(f"{server.base_url}/healthz").status_code == 200
    ready = httpx.get(f"{server.base_url}/readyz")
    assert ready.status_code == 200 and ready.json()["model"] == "tiny"


def test_chat_completion_usage_and_length(server: RuntimeServer) -> None:
    reply = server.client().chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=8,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    choice = reply.choices[0]
    assert reply.object == "chat.completion" and reply.model == "tiny" and reply.id.startswith("chatcmpl-")
    assert choice.finish_reason == "length" and choice.message.role == "assistant"
    assert reply.usage is not None and reply.usage.completion_tokens == 8
    # The chat template renders "U: hi\nA:"; the tiny tokenizer gives BOS, "▁" and one token per byte.
    assert reply.usage.prompt_tokens == len("U: hi\nA:") + 2
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 8


def test_empty_model_name_is_accepted(server: RuntimeServer) -> None:
    response = httpx.post(f"{server.api_url}/completions", json={"prompt": "x", "max_tokens": 2}, timeout=30)
    assert response.status_code == 200 and response.json()["model"] == "tiny"


def test_chat_stream_is_framed_like_openai(server: RuntimeServer) -> None:
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 12,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response = httpx.post(f"{server.api_url}/chat/completions", json=body, timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.content)
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert len({c["id"] for c in chunks}) == 1 and all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    final, usage = chunks[-2], chunks[-1]
    assert final["choices"][0]["finish_reason"] == "length" and final["choices"][0]["delta"] == {}
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 12
    assert all(c["usage"] is None for c in chunks[:-1])
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-2])
    whole = server.client().chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hello"}],
        max_tokens=12,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    assert streamed == whole.choices[0].message.content


def test_stream_without_usage_has_no_usage_field(server: RuntimeServer) -> None:
    body = {"model": "tiny", "prompt": "abc", "max_tokens": 4, "stream": True, "ignore_eos": True}
    response = httpx.post(f"{server.api_url}/completions", json=body, timeout=30)
    events = sse_events(response.content)
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert events[-1] == b"[DONE]" and all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_completion_stream_matches_whole_completion(server: RuntimeServer) -> None:
    whole = greedy(server, "The sky is", 16, extra_body={"ignore_eos": True})
    stream = server.client().completions.create(
        model="tiny",
        prompt="The sky is",
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 16
    assert whole.object == "text_completion" and whole.choices[0].finish_reason == "length"


def test_stop_sequence_split_over_pieces(server: RuntimeServer) -> None:
    # Every token of the tiny model is one byte, so a three-character stop spans three pieces.
    text = greedy(server, "stop test", 40, extra_body={"ignore_eos": True}).choices[0].text
    stop = next(text[i : i + 3] for i in range(4, len(text) - 3) if "\ufffd" not in text[i : i + 3])
    expected = text[: text.find(stop)]
    cut = greedy(server, "stop test", 40, stop=[stop], extra_body={"ignore_eos": True})
    assert cut.choices[0].text == expected and cut.choices[0].finish_reason == "stop"
    stream = server.client().completions.create(
        model="tiny",
        prompt="stop test",
        max_tokens=40,
        temperature=0,
        stop=stop,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks) == expected
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_same_seed_same_output(server: RuntimeServer) -> None:
    def sample(seed: int) -> str:
        reply = server.client().completions.create(
            model="tiny",
            prompt="seeded",
            max_tokens=24,
            temperature=1.0,
            seed=seed,
            extra_body={"ignore_eos": True},
        )
        return reply.choices[0].text

    assert sample(7) == sample(7)


def test_echo_prepends_the_prompt(server: RuntimeServer) -> None:
    plain = greedy(server, "echo me", 6).choices[0].text
    echoed = greedy(server, "echo me", 6, echo=True).choices[0].text
    assert echoed == "echo me" + plain


def test_chat_template_renders_messages(server: RuntimeServer) -> None:
    chat = server.client().chat.completions.create(
        model="tiny",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        max_tokens=16,
        temperature=0,
    )
    # chat_message per message, joined by "\n", then `chat`; the completion template is "{{.Input}}".
    same = greedy(server, "S: be brief\nU: hi\nA:", 16)
    assert chat.choices[0].message.content == same.choices[0].text
    assert chat.usage is not None and same.usage is not None
    assert chat.usage.prompt_tokens == same.usage.prompt_tokens


def test_chat_with_tools_is_accepted(server: RuntimeServer) -> None:
    reply = server.client().chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "time?"}],
        tools=[{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}],
        max_tokens=4,
    )
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_edits_use_the_edit_template(server: RuntimeServer) -> None:
    response = httpx.post(
        f"{server.api_url}/edits",
        json={"model": "tiny", "instruction": "fix", "input": "teh cat", "max_tokens": 10, "temperature": 0},
        timeout=30,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "edit" and set(body["choices"][0]) == {"text", "index"}
    same = greedy(server, "Instruction: fix\nInput: teh cat\nOutput:", 10)
    assert body["choices"][0]["text"] == same.choices[0].text
    assert same.usage is not None and body["usage"]["prompt_tokens"] == same.usage.prompt_tokens


def test_embeddings(server: RuntimeServer) -> None:
    client = server.client()
    one = client.embeddings.create(model="tiny", input="hello")
    assert one.object == "list" and len(one.data) == 1 and one.data[0].index == 0
    vector = one.data[0].embedding
    assert math.isclose(sum(v * v for v in vector), 1.0, rel_tol=1e-3)
    many = client.embeddings.create(model="tiny", input=["hello", "another text"])
    assert [d.index for d in many.data] == [0, 1]
    assert many.data[0].embedding == pytest.approx(vector, abs=1e-5)
    assert many.usage.prompt_tokens > one.usage.prompt_tokens
    raw = httpx.post(
        f"{server.api_url}/embeddings", json={"input": "hello", "encoding_format": "base64"}, timeout=30
    ).json()
    packed = base64.b64decode(raw["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(packed) // 4}f", packed)) == pytest.approx(vector, abs=1e-6)


def test_metrics_use_vllm_names(server: RuntimeServer) -> None:
    greedy(server, "metrics", 3)
    text = httpx.get(f"{server.base_url}/metrics").text
    for name in (
        'vllm:num_requests_running{model_name="tiny"}',
        'vllm:num_requests_waiting{model_name="tiny"}',
        'vllm:time_to_first_token_seconds_count{model_name="tiny"}',
        'vllm:e2e_request_latency_seconds_count{model_name="tiny"}',
        'vllm:prompt_tokens_total{model_name="tiny"}',
        'vllm:generation_tokens_total{model_name="tiny"}',
    ):
        assert name in text
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples['vllm:generation_tokens_total{model_name="tiny"}'] >= 3
    assert samples['vllm:e2e_request_latency_seconds_count{model_name="tiny"}'] >= 1
