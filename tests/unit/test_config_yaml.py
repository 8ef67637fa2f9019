"""LocalAI's YAML quirks, each with real YAML text (see localai-schema.md §1)."""

from __future__ import annotations

import pytest

from localmodel_runtime.config import (
    NOT_SERVED,
    ModelConfig,
    ModelConfigError,
    parse_model_configs,
    unsupported_keys,
)


def one(text: str) -> ModelConfig:
    (config,) = parse_model_configs(text)
    return config


def test_yaml_12_words_stay_strings_outside_boolean_fields() -> None:
    config = one("name: no\nstopwords: [no, on, off, yes, y, n]\nsystem_prompt: off\n")
    assert config.name == "no"
    assert config.stopwords == ["no", "on", "off", "yes", "y", "n"]
    assert config.system_prompt == "off"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("yes", True),
        ("Yes", True),
        ("on", True),
        ("ON", True),
        ("y", True),
        ("true", True),
        ("no", False),
        ("off", False),
        ("N", False),
        ("false", False),
        ("False", False),
    ],
)
def test_yaml_11_words_are_booleans_in_boolean_fields(text: str, expected: bool) -> None:
    config = one(f"name: m\nf16: {text}\ntemplate:\n  use_tokenizer_template: {text}\n")
    assert config.f16 is expected
    assert config.template is not None and config.template.use_tokenizer_template is expected


def test_float_into_integer_field_is_truncated() -> None:
    config = one("name: m\nparameters:\n  top_k: 0.9\n  max_tokens: 12.7\ncontext_size: 1024.99\n")
    assert config.parameters is not None
    assert config.parameters.top_k == 0
    assert config.parameters.max_tokens == 12
    assert config.context_size == 1024


def test_any_scalar_into_string_field_keeps_its_text() -> None:
    config = one(
        "name: 1.50\nmain_gpu: 0\ntensor_split: 0.8,0.2\nflash_attention: true\nstopwords: [1e3, 007]\n"
    )
    assert config.name == "1.50"  # the text, not the float 1.5
    assert config.main_gpu == "0"
    assert config.tensor_split == "0.8,0.2"
    assert config.flash_attention == "true"
    assert config.stopwords == ["1e3", "007"]


def test_integer_in_float_field_and_int_field() -> None:
    config = one("name: m\nparameters: {temperature: 1, top_p: 80, seed: -1}\n")
    assert config.parameters is not None
    assert config.parameters.temperature == 1.0
    assert config.parameters.top_p == 80.0  # LocalAI's own fixture has this; no range is imposed
    assert config.parameters.seed == -1


def test_list_file_loads_every_entry_with_anchors_and_merge_keys() -> None:
    text = """
- &base
  name: first
  backend: llama
  context_size: 512
  parameters: {model: a.gguf}
- <<: *base
  name: second
  context_size: 1024
"""
    first, second = parse_model_configs(text)
    assert (first.name, first.context_size) == ("first", 512)
    assert (second.name, second.backend, second.context_size) == ("second", "llama", 1024)
    assert second.model_file == "a.gguf"


def test_localai_fixture_list_file() -> None:
    # LocalAI's tests/models_fixtures/config.yaml: a list file with templates named by file and type quirks.
    text = """
- name: list1
  parameters:
    model: testmodel.ggml
    top_p: 80
    top_k: 0.9
    temperature: 0.1
  context_size: 200
  stopwords:
  - "HUMAN:"
  - "### Response:"
  roles:
    user: "HUMAN:"
    system: "GPT:"
  template:
    completion: completion
    chat: ggml-gpt4all-j
- name: list2
  parameters:
    top_p: 80
    top_k: 0.9
    temperature: 0.1
    model: testmodel.ggml
  context_size: 200
  stopwords:
  - "HUMAN:"
  - "### Response:"
  roles:
    user: "HUMAN:"
    system: "GPT:"
  template:
    completion: completion
    chat: ggml-gpt4all-j
"""
    configs = parse_model_configs(text)
    assert [c.name for c in configs] == ["list1", "list2"]
    for config in configs:
        assert config.parameters is not None and config.parameters.top_k == 0
        assert config.roles == {"user": "HUMAN:", "system": "GPT:"}
        assert config.template is not None and config.template.chat == "ggml-gpt4all-j"


def test_null_leaves_a_field_unset() -> None:
    config = one("name: m\nthreads: ~\nparameters:\n  temperature: null\n")
    assert config.threads is None
    assert config.parameters is not None and config.parameters.temperature is None


def test_duplicate_keys_are_an_error_naming_the_key_and_lines() -> None:
    with pytest.raises(ModelConfigError) as info:
        parse_model_configs("name: a\nthreads: 2\nthreads: 4\n", "dup.yaml")
    message = str(info.value)
    assert "dup.yaml" in message and "threads" in message and "line 3" in message and "line 2" in message


def test_unknown_keys_are_kept_and_listed_never_dropped() -> None:
    config = one(
        "name: m\ncutwords: ['x']\nparameters: {model: a.gguf, keep: 3}\ntemplate: {jinja_template: true}\n"
    )
    assert config.model_extra == {"cutwords": ["x"]}
    assert config.parameters is not None and config.parameters.model_extra == {"keep": 3}
    dumped = config.model_dump(exclude_none=True)
    assert dumped["cutwords"] == ["x"] and dumped["parameters"]["keep"] == 3
    assert {"cutwords", "parameters.keep", "template.jinja_template"} <= set(unsupported_keys(config))


def test_known_but_not_served_keys_are_listed_only_when_set() -> None:
    assert unsupported_keys(one("name: m\nbackend: llama\n")) == []
    listed = unsupported_keys(one("name: m\nmcp: {remote: x}\nparameters: {pooling: mean}\n"))
    assert listed == ["mcp", "parameters.pooling"]


def test_not_served_names_real_fields() -> None:
    import typing

    from pydantic import BaseModel

    for path in NOT_SERVED:
        block: type[BaseModel] | None = ModelConfig
        for part in path.split("."):
            assert block is not None and part in block.model_fields, path
            annotation = block.model_fields[part].annotation
            blocks = [a for a in (annotation, *typing.get_args(annotation)) if isinstance(a, type)]
            block = next((a for a in blocks if issubclass(a, BaseModel)), None)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("name: m\nthreads: many\n", ["line 2", "threads", "integer"]),
        ("name: m\nf16: maybe\n", ["line 2", "f16", "boolean"]),
        ("name: m\ntemplate: hello\n", ["template", "mapping"]),
        ("name: m\nstopwords: '<|end|>'\n", ["stopwords", "list"]),
        ("name: m\nthreads: -3\n", ["threads", "greater than or equal to 0"]),
        ("name: m\ncontext_size: -2\n", ["context_size", "-1"]),
        ("name: m\ngpu_memory_utilization: 1.5\n", ["gpu_memory_utilization", "less than or equal to 1"]),
        ("name: m\nbackend: 'llama cpp'\n", ["backend", "a-zA-Z0-9"]),
        ("name: m\nbackend: ../bin\n", ["backend"]),
        ("name: m\nmmproj: /etc/passwd\n", ["mmproj", "relative"]),
        ("name: m\nmirostat: 3\n", ["mirostat"]),
        ("name: m\nparameters: {model: x, encoding_format: hex}\n", ["parameters.encoding_format"]),
        ("name: m\ndownload_files: [{filename: a}]\n", ["download_files.0.uri", "required"]),
        ("name: [unclosed\n", ["invalid YAML"]),
        ("", ["empty"]),
        ("name: a\n---\nname: b\n", ["one YAML document"]),
    ],
)
def test_bad_input_names_the_field(text: str, fragments: list[str]) -> None:
    with pytest.raises(ModelConfigError) as info:
        parse_model_configs(text, "bad.yaml")
    message = str(info.value)
    assert message.startswith("bad.yaml")
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("filename", ["../x.gguf", "/abs/x.gguf", "a/../../x"])
def test_download_outside_the_models_dir_is_rejected(filename: str) -> None:
    with pytest.raises(ModelConfigError) as info:
        parse_model_configs(f"name: m\ndownload_files: [{{filename: '{filename}', uri: 'https://e/x'}}]\n")
    assert "download_files.0.filename" in str(info.value)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("parameters: {model: ../../etc/shadow}", "parameters.model"),
        ("parameters: {model: /etc/passwd}", "parameters.model"),
        ("lora_adapter: ../other-team/adapter.bin", "lora_adapter"),
        ("lora_adapters: [ok.bin, /abs/adapter.bin]", "lora_adapters"),
        ("prompt_cache_path: ../../var/cache", "prompt_cache_path"),
        ("draft_model: /models/../x.gguf", "draft_model"),
    ],
)
def test_every_model_path_key_stays_inside_the_models_dir(text: str, field: str) -> None:
    with pytest.raises(ModelConfigError) as info:
        parse_model_configs(f"name: m\n{text}\n", "m.yaml")
    assert field in str(info.value) and "relative to the models directory" in str(info.value)


def test_a_model_uri_or_repository_id_is_not_a_path() -> None:
    (config,) = parse_model_configs("name: m\nparameters: {model: 'huggingface://o/r/m.gguf'}\n")
    assert config.model_file == "m.gguf"
    (config,) = parse_model_configs("name: m\nbackend: transformers\nparameters: {model: owner/repo}\n")
    assert config.model_file == "owner/repo"
