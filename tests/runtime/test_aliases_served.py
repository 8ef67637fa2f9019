"""Aliases through a real runtime and a real router, with the official `openai` client: the runtime
answers to the aliases its model file lists, the router to the aliases in its table."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from localmodel_router.app import RouterApp
from localmodel_router.auth import ApiKeys
from localmodel_router.settings import RouterSettings
from localmodel_router.table import ModelSettings, ModelTable
from tests.support.router_fixtures import router_server
from tests.support.runtime_server import RuntimeServer, runtime_server

CONFIGS: list[dict[str, Any]] = [
    {
        "name": "tiny",
        "backend": "llama",
        "context_size": 256,
        "parameters": {"model": "tiny.gguf"},
        "template": {"completion": "{{.Input}}"},
    },
    {"name": "tiny-alias", "alias": "tiny"},
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[RuntimeServer]:
    with runtime_server(tmp_path_factory.mktemp("aliases"), CONFIGS, tiny_gguf.parent) as running:
        yield running


def complete(client: openai.OpenAI, model: str) -> str:
    reply = client.completions.create(model=model, prompt="hello", max_tokens=8, temperature=0)
    return reply.choices[0].text


def test_the_runtime_answers_to_the_aliases_in_its_model_file(server: RuntimeServer) -> None:
    with server.client() as client:
        assert [m.id for m in client.models.list()] == ["tiny", "tiny-alias"]
        assert client.models.retrieve("tiny-alias").id == "tiny-alias"
        assert complete(client, "tiny-alias") == complete(client, "tiny")
        with pytest.raises(openai.NotFoundError):
            complete(client, "other")


def test_the_router_answers_an_alias_in_its_table(server: RuntimeServer) -> None:
    table = ModelTable()
    table.upsert_model("tiny", ModelSettings())
    table.set_endpoints("tiny", [(server.base_url.removeprefix("http://"), True)])
    table.set_alias("gpt-4", "tiny")
    router = router_server(RouterApp(table, None, RouterSettings(), ApiKeys({"test"})))
    try:
        with openai.OpenAI(base_url=f"{router.url}/v1", api_key="test", max_retries=0) as client:
            assert {m.id for m in client.models.list()} == {"tiny", "gpt-4"}
            assert client.models.retrieve("gpt-4").id == "gpt-4"
            # The runtime does not know `gpt-4`: the router asks it for `tiny`.
            assert complete(client, "gpt-4") == complete(client, "tiny")
            chat = client.chat.completions.create(
                model="gpt-4", messages=[{"role": "user", "content": "hi"}], max_tokens=4
            )
            assert chat.choices[0].message.content is not None
            with pytest.raises(openai.NotFoundError):
                complete(client, "gpt-5")
    finally:
        router.stop()
