"""The model YAML's `parameters` are defaults a request overrides; its `stopwords` join a request's `stop`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.model_configs import tiny_gguf_config
from tests.support.runtime_server import runtime_server


def config(**keys: Any) -> dict[str, Any]:
    parameters = {"model": "tiny.gguf", "temperature": 0, "max_tokens": 6, "ignore_eos": True}
    return tiny_gguf_config(parameters=parameters, **keys)


def test_yaml_defaults_and_stopwords(tmp_path: Path, tiny_gguf: Path) -> None:
    with runtime_server(tmp_path, config(), tiny_gguf.parent) as server:
        client = server.client()
        default = client.completions.create(model="tiny", prompt="defaults")
        assert default.usage is not None and default.usage.completion_tokens == 6  # YAML max_tokens
        assert default.choices[0].finish_reason == "length"
        again = client.completions.create(model="tiny", prompt="defaults")
        assert again.choices[0].text == default.choices[0].text  # YAML temperature 0: greedy
        longer = client.completions.create(model="tiny", prompt="defaults", max_tokens=30)
        assert longer.usage is not None and longer.usage.completion_tokens == 30  # the request wins
        text = longer.choices[0].text
    assert longer.choices[0].text.startswith(default.choices[0].text)

    # A stop word from the model's YAML that the greedy output contains past its start.
    stopword = next(text[i : i + 2] for i in range(3, len(text) - 2) if "\ufffd" not in text[i : i + 2])
    with runtime_server(tmp_path, config(stopwords=[stopword]), tiny_gguf.parent) as server:
        client = server.client()
        cut = client.completions.create(model="tiny", prompt="defaults", max_tokens=30)
        assert cut.choices[0].text == text[: text.find(stopword)]
        assert cut.choices[0].finish_reason == "stop"
        # A request's `stop` is added to the model's stopwords, not put in their place.
        both = client.completions.create(model="tiny", prompt="defaults", max_tokens=30, stop=["\x00never"])
        assert both.choices[0].text == cut.choices[0].text
