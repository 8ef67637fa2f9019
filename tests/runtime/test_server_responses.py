"""OpenAI's Responses API (`/v1/responses`) through a real `localmodel-runtime serve`, called with the
official `openai` SDK's `client.responses` as Codex CLI calls it: string and item input, instructions,
whole and streamed answers, function calls and their outputs, JSON output, and errors.

The tiny random model writes noise; under a required tool choice or a JSON schema its output is
grammar-constrained, so calls and JSON are well-formed whatever it writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.model_configs import role_lines_template, tiny_gguf_config
from tests.support.router_fixtures import runtime_or_router
from tests.support.runtime_server import RuntimeServer, runtime_server

CONFIG = tiny_gguf_config(context_size=1024, template=role_lines_template())
UNIT_TOOL = {
    "type": "function",
    "name": "set_unit",
    "description": "Set the temperature unit",
    "parameters": {
        "type": "object",
        "properties": {"unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["unit"],
    },
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[RuntimeServer]:
    with runtime_server(tmp_path_factory.mktemp("responses"), CONFIG, tiny_gguf.parent) as running:
        yield running


@pytest.fixture(params=["runtime", "router"])
def base_url(request: pytest.FixtureRequest, server: RuntimeServer) -> Iterator[str]:
    """The runtime itself, or a real router in front of it (requiring a key)."""
    with runtime_or_router(request.param, server.base_url, "tiny") as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="test", max_retries=0) as c:
        yield c


def test_a_whole_response_from_a_string(client: openai.OpenAI) -> None:
    reply = client.responses.create(
        model="tiny", input="Say hello", instructions="Be terse.", max_output_tokens=8
    )
    assert reply.object == "response" and reply.id.startswith("resp_") and reply.model == "tiny"
    assert reply.status in ("completed", "incomplete")
    assert reply.output[0].type == "message" and reply.output[0].role == "assistant"
    assert reply.output_text == reply.output[0].content[0].text
    assert reply.usage is not None and reply.usage.input_tokens > 0
    assert 0 < reply.usage.output_tokens <= 8
    assert reply.usage.total_tokens == reply.usage.input_tokens + reply.usage.output_tokens


def test_running_out_of_output_tokens_is_incomplete(client: openai.OpenAI) -> None:
    reply = client.responses.create(
        model="tiny",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Count to a hundred"}]}],
        max_output_tokens=4,
        extra_body={"ignore_eos": True},
    )
    assert reply.status == "incomplete" and reply.incomplete_details is not None
    assert reply.incomplete_details.reason == "max_output_tokens"
    assert reply.usage is not None and reply.usage.output_tokens == 4


def test_a_streamed_response_in_the_sdks_event_sequence(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model="tiny", input="Tell me a story", max_output_tokens=5, extra_body={"ignore_eos": True}
    ) as stream:
        events = list(stream)
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    # Out of output tokens: OpenAI ends such a stream with response.incomplete, not response.completed.
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    final = events[-1].response  # type: ignore[union-attr]
    assert final.status == "incomplete" and final.output_text == "".join(deltas)
    assert final.usage is not None and final.usage.output_tokens == 5


def test_the_stream_numbers_its_events(base_url: str) -> None:
    body = {"model": "tiny", "input": "hi", "max_output_tokens": 3, "stream": True}
    headers = {"authorization": "Bearer test"}
    text = httpx.post(f"{base_url}/v1/responses", json=body, headers=headers, timeout=60).text
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert "[DONE]" not in text


def test_a_function_call_and_its_output_in_a_conversation(client: openai.OpenAI) -> None:
    reply = client.responses.create(
        model="tiny", input="use celsius", tools=[UNIT_TOOL], tool_choice="required", max_output_tokens=64
    )
    (call,) = [item for item in reply.output if item.type == "function_call"]
    assert call.name == "set_unit" and json.loads(call.arguments)["unit"] in ("celsius", "fahrenheit")
    # Codex CLI's next turn: the whole conversation again, with the call and its output.
    follow_up = client.responses.create(
        model="tiny",
        input=[
            {"role": "user", "content": "use celsius"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "done"},
        ],
        tools=[UNIT_TOOL],
        tool_choice="none",
        max_output_tokens=8,
    )
    assert [item.type for item in follow_up.output] in (["message"], [])


def test_a_streamed_function_call(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model="tiny",
        input="use fahrenheit",
        tools=[UNIT_TOOL],
        tool_choice={"type": "function", "name": "set_unit"},
        max_output_tokens=64,
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.done" in kinds and kinds[-1] == "response.completed"
    (call,) = [item for item in final.output if item.type == "function_call"]
    assert json.loads(call.arguments)["unit"] in ("celsius", "fahrenheit")


def test_json_output_follows_the_schema(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    reply = client.responses.create(
        model="tiny",
        input="yes or no?",
        text={"format": {"type": "json_schema", "name": "verdict", "schema": schema, "strict": True}},
        max_output_tokens=64,
    )
    assert json.loads(reply.output_text)["answer"] in ("yes", "no")


def test_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as stored:
        client.responses.create(model="tiny", input="x", previous_response_id="resp_123")
    assert stored.value.param == "previous_response_id"
    with pytest.raises(openai.BadRequestError) as image:
        client.responses.create(
            model="tiny", input=[{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]
        )
    assert "does not accept images" in image.value.message
    with pytest.raises(openai.BadRequestError) as web:
        client.responses.create(model="tiny", input="x", tools=[{"type": "web_search"}])
    assert web.value.param == "tools.0.type"
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="nope", input="x")


def test_langchain_over_the_responses_api(base_url: str) -> None:
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(
        model="tiny",
        base_url=f"{base_url}/v1",
        api_key="test",  # type: ignore[arg-type]
        use_responses_api=True,
        max_retries=0,
        max_tokens=6,  # type: ignore[call-arg]
    )
    reply = chat.invoke("Say hello")
    assert reply.response_metadata["model_name"] == "tiny"
    assert reply.response_metadata["id"].startswith("resp_")
    assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] > 0
    streamed = list(chat.stream("Tell me a story"))
    assert streamed  # chunks of the same answer, as LangChain assembles them
