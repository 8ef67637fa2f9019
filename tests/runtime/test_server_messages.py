"""Anthropic's Messages API (`/v1/messages`) through a real `localmodel-runtime serve`, called with the
official `anthropic` SDK as Claude Code calls it: whole and streamed answers, system prompts, multi-turn
conversations with tool use, stop reasons and usage, and Anthropic-shaped errors.

The tiny random model writes noise; under `tool_choice: any` its output is grammar-constrained, so a
tool call is well-formed whatever it writes (enum arguments keep it bounded).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import pytest

from tests.support.model_configs import role_lines_template, tiny_gguf_config
from tests.support.router_fixtures import router_in_front, runtime_or_router
from tests.support.runtime_server import RuntimeServer, runtime_server

CONFIG = tiny_gguf_config(context_size=1024, template=role_lines_template())
UNIT_TOOL = {
    "name": "set_unit",
    "description": "Set the temperature unit",
    "input_schema": {
        "type": "object",
        "properties": {"unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["unit"],
    },
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[RuntimeServer]:
    with runtime_server(tmp_path_factory.mktemp("messages"), CONFIG, tiny_gguf.parent) as running:
        yield running


@pytest.fixture(params=["runtime", "router"])
def base_url(request: pytest.FixtureRequest, server: RuntimeServer) -> Iterator[str]:
    """The runtime itself, or a real router in front of it (requiring the key Claude Code sends as
    `x-api-key`)."""
    with runtime_or_router(request.param, server.base_url, "tiny") as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=base_url, api_key="test", max_retries=0) as c:
        yield c


def test_a_whole_message(client: anthropic.Anthropic) -> None:
    reply = client.messages.create(
        model="tiny",
        max_tokens=8,
        system="You are terse.",
        messages=[{"role": "user", "content": "Say hello"}],
    )
    assert reply.type == "message" and reply.role == "assistant" and reply.model == "tiny"
    assert reply.id.startswith("msg_")
    assert reply.stop_reason in ("max_tokens", "end_turn")
    assert reply.usage.input_tokens > 0 and 0 < reply.usage.output_tokens <= 8
    assert all(block.type == "text" for block in reply.content)


def test_max_tokens_is_the_stop_reason_when_it_is_reached(client: anthropic.Anthropic) -> None:
    reply = client.messages.create(
        model="tiny",
        max_tokens=4,
        messages=[{"role": "user", "content": [{"type": "text", "text": "Count to a hundred"}]}],
        extra_body={"ignore_eos": True},
    )
    assert reply.stop_reason == "max_tokens" and reply.usage.output_tokens == 4


def test_a_streamed_message_matches_the_sdk_accumulation(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model="tiny",
        max_tokens=6,
        messages=[{"role": "user", "content": "Tell me a story"}],
        extra_body={"ignore_eos": True},
    ) as stream:
        deltas = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.content and final.content[0].type == "text" and final.content[0].text == deltas
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 6


def test_the_raw_event_sequence(base_url: str) -> None:
    body = {"model": "tiny", "max_tokens": 3, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-api-key": "test"}
    text = httpx.post(
        f"{base_url}/v1/messages", json={**body, "ignore_eos": True}, headers=headers, timeout=60
    ).text
    names = [line.removeprefix("event: ") for line in text.splitlines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[3:-3] == ["content_block_delta"] * (len(names) - 6)
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert "[DONE]" not in text


def test_tool_use_and_its_result_in_a_conversation(client: anthropic.Anthropic) -> None:
    reply = client.messages.create(
        model="tiny",
        max_tokens=64,
        tools=[UNIT_TOOL],
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "use celsius"}],
    )
    assert reply.stop_reason == "tool_use"
    (call,) = [block for block in reply.content if block.type == "tool_use"]
    assert call.name == "set_unit" and call.input["unit"] in ("celsius", "fahrenheit")
    assert call.id.startswith("toolu_")
    # Claude Code's next turn: the assistant's tool_use, then the user's tool_result.
    follow_up = client.messages.create(
        model="tiny",
        max_tokens=8,
        tools=[UNIT_TOOL],
        tool_choice={"type": "none"},
        messages=[
            {"role": "user", "content": "use celsius"},
            {"role": "assistant", "content": [b.model_dump() for b in reply.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "ok"}]},
        ],
    )
    assert follow_up.stop_reason in ("end_turn", "max_tokens")
    assert all(block.type == "text" for block in follow_up.content)


def test_a_streamed_tool_call_arrives_as_input_json(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model="tiny",
        max_tokens=64,
        tools=[UNIT_TOOL],
        tool_choice={"type": "tool", "name": "set_unit"},
        messages=[{"role": "user", "content": "use fahrenheit"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    (call,) = [block for block in final.content if block.type == "tool_use"]
    assert call.name == "set_unit" and call.input["unit"] in ("celsius", "fahrenheit")


def test_count_tokens(client: anthropic.Anthropic) -> None:
    short = client.messages.count_tokens(model="tiny", messages=[{"role": "user", "content": "hi"}])
    longer = client.messages.count_tokens(
        model="tiny", system="You are terse.", messages=[{"role": "user", "content": "hi there, how are you"}]
    )
    assert 0 < short.input_tokens < longer.input_tokens


def test_errors_are_anthropic_shaped(client: anthropic.Anthropic, base_url: str) -> None:
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model="tiny", max_tokens=0, messages=[{"role": "user", "content": "x"}])
    assert bad.value.body["type"] == "error"
    assert bad.value.body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in bad.value.body["error"]["message"]
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="nope", max_tokens=4, messages=[{"role": "user", "content": "x"}])
    assert missing.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as image:
        client.messages.create(
            model="tiny",
            max_tokens=4,
            messages=[
                {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "x"}}]}
            ],
        )
    assert "does not accept images" in image.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as thinking:
        client.messages.create(
            model="tiny",
            max_tokens=4,
            messages=[
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"}]},
                {"role": "user", "content": "y"},
            ],
        )
    assert thinking.value.body["error"]["message"].startswith("messages.1.content.0: thinking blocks")
    missing_max = httpx.post(
        f"{base_url}/v1/messages",
        json={"model": "tiny", "messages": [{"role": "user", "content": "x"}]},
        headers={"x-api-key": "test"},
    )
    assert missing_max.status_code == 400 and "max_tokens" in missing_max.json()["error"]["message"]
    # A body that is not JSON at all gets the same shape.
    raw = httpx.post(
        f"{base_url}/v1/messages", content=b"{not json", headers={"x-api-key": "test"}, timeout=30
    )
    assert raw.status_code == 400 and raw.json()["type"] == "error"


def test_the_router_answers_its_own_errors_in_anthropic_shape(server: RuntimeServer) -> None:
    address = server.base_url.removeprefix("http://")
    with router_in_front("tiny", address, keys={"test"}) as router:
        with (
            anthropic.Anthropic(base_url=router.url, api_key="wrong", max_retries=0) as wrong,
            pytest.raises(anthropic.AuthenticationError) as denied,
        ):
            wrong.messages.create(model="tiny", max_tokens=4, messages=[{"role": "user", "content": "x"}])
        assert denied.value.body["type"] == "error"
        assert denied.value.body["error"]["type"] == "authentication_error"
        with anthropic.Anthropic(base_url=router.url, api_key="test", max_retries=0) as client:
            with pytest.raises(anthropic.NotFoundError) as missing:
                client.messages.create(
                    model="elsewhere", max_tokens=4, messages=[{"role": "user", "content": "x"}]
                )
            assert missing.value.body["error"]["type"] == "not_found_error"
            assert "elsewhere" in missing.value.body["error"]["message"]
