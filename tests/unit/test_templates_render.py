"""PromptRenderer: LocalAI's chat algorithm, completion/edit, files, fallbacks and tokenizer templates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from localmodel_runtime.config import ModelConfig, parse_model_configs
from localmodel_runtime.templates import PromptRenderer, RenderError, TemplateError

STARLING_YAML = """\
name: starling-openvino
backend: transformers
parameters:
  model: fakezeta/Starling-LM-7B-beta-openvino-int8
context_size: 8192
threads: 6
f16: true
type: OVModelForCausalLM
stopwords:
- <|end_of_turn|>
- <|endoftext|>
prompt_cache_path: "cache"
prompt_cache_all: true
template:
  chat_message: |
    {{if eq .RoleName "system"}}{{.Content}}<|end_of_turn|>{{end}}{{if eq .RoleName "assistant"}}<|end_of_turn|>GPT4 Correct Assistant: {{.Content}}<|end_of_turn|>{{end}}{{if eq .RoleName "user"}}GPT4 Correct User: {{.Content}}{{end}}
  chat: |
    {{.Input}}<|end_of_turn|>GPT4 Correct Assistant:
  completion: |
    {{.Input}}
"""  # noqa: E501 (the docs' template, verbatim)

CHATML_YAML = """\
name: chatml
parameters:
  model: model.gguf
template:
  chat_message: |
    <|im_start|>{{if eq .RoleName "assistant"}}assistant{{else if eq .RoleName "system"}}system{{else if eq .RoleName "tool"}}tool{{else if eq .RoleName "user"}}user{{end}}
    {{- if .FunctionCall }}
    <tool_call>
    {{- else if eq .RoleName "tool" }}
    <tool_response>
    {{- end }}
    {{- if .Content}}
    {{.Content }}
    {{- end }}
    {{- if .FunctionCall}}
    {{toJson .FunctionCall}}
    {{- end }}
    {{- if .FunctionCall }}
    </tool_call>
    {{- else if eq .RoleName "tool" }}
    </tool_response>
    {{- end }}<|im_end|>
  function: |
    <|im_start|>system
    <tools>
    {{range .Functions}}
    {'name': '{{.Name}}', 'description': '{{.Description}}', 'parameters': {{toJson .Parameters}} }
    {{end}}
    </tools><|im_end|>
    {{.Input -}}
    <|im_start|>assistant
  chat: |
    {{.Input -}}
    <|im_start|>assistant
  completion: |
    {{.Input}}
"""  # noqa: E501 (LocalAI's gallery chatml.yaml, trimmed)

CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ],
    },
    {"role": "tool", "content": "22C & <sunny>", "name": "get_weather"},
]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]

CHATML_MESSAGES = (
    "<|im_start|>system\nYou are helpful.<|im_end|>\n"
    "\n<|im_start|>user\nWeather in Paris?<|im_end|>\n"
    "\n<|im_start|>assistant\n<tool_call>\n"
    '[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather",'
    '"arguments":"{\\"city\\":\\"Paris\\"}"}}]\n</tool_call><|im_end|>\n'
    "\n<|im_start|>tool\n<tool_response>\n22C & <sunny>\n</tool_response><|im_end|>\n"
)


def config(yaml_text: str) -> ModelConfig:
    (loaded,) = parse_model_configs(yaml_text)
    return loaded


def renderer(spec: dict[str, Any], models_dir: Path | None = None, **kwargs: Any) -> PromptRenderer:
    return PromptRenderer.from_config(
        ModelConfig.model_validate(spec), models_dir or Path("/nonexistent"), **kwargs
    )


def test_starling_openvino_from_the_docs() -> None:
    r = PromptRenderer.from_config(config(STARLING_YAML), Path("/nonexistent"))
    prompt = r.chat(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": [{"type": "text", "text": "2+2?"}]},
        ]
    )
    assert prompt == (
        "Be brief.<|end_of_turn|>\n"
        "\nGPT4 Correct User: Hi\n"
        "\n<|end_of_turn|>GPT4 Correct Assistant: Hello!<|end_of_turn|>\n"
        "\nGPT4 Correct User: 2+2?\n"
        "<|end_of_turn|>GPT4 Correct Assistant:\n"
    )
    assert r.completion("Once upon a time") == "Once upon a time\n"
    assert r.edit("fix", "teh cat") == "teh cat"  # no edit template: the input as is
    assert not r.uses_tokenizer_template


def test_chatml_gallery_template_with_tool_calls() -> None:
    r = PromptRenderer.from_config(config(CHATML_YAML), Path("/nonexistent"))
    assert r.chat(CONVERSATION) == CHATML_MESSAGES + "<|im_start|>assistant\n"
    # tool_choice "none" keeps the chat template even with tools
    assert (
        r.chat(CONVERSATION, tools=TOOLS, tool_choice="none") == CHATML_MESSAGES + "<|im_start|>assistant\n"
    )


def test_function_template_lists_tools_and_the_no_action_function() -> None:
    r = PromptRenderer.from_config(config(CHATML_YAML), Path("/nonexistent"))
    prompt = r.chat(CONVERSATION[:2], tools=TOOLS, tool_choice="auto")
    assert prompt == (
        "<|im_start|>system\n<tools>\n\n"
        "{'name': 'get_weather', 'description': 'Current weather', 'parameters': "
        '{"properties":{"city":{"type":"string"}},"required":["city"],"type":"object"} }\n\n'
        "{'name': 'answer', 'description': 'use this action to answer without performing any action', "
        "'parameters': "
        '{"properties":{"message":{"description":"The message to reply the user with","type":"string"}}} }\n'
        "\n</tools><|im_end|>\n"
        "<|im_start|>system\nYou are helpful.<|im_end|>\n\n<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    forced = r.chat(
        CONVERSATION[:2], tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_weather"}}
    )
    assert "'answer'" not in forced and "'get_weather'" in forced


def test_functions_to_json_in_declaration_order() -> None:
    r = renderer({"template": {"chat": "{{ toJson .Functions }}"}, "function": {"disable_no_action": True}})
    assert r.chat([{"role": "user", "content": "x"}], tools=TOOLS) == (
        '[{"name":"get_weather","description":"Current weather","strict":false,'
        '"parameters":{"properties":{"city":{"type":"string"}},"required":["city"],"type":"object"}}]'
    )


def test_go_field_names_of_tool_calls() -> None:
    r = renderer(
        {
            "template": {
                "chat_message": "{{.RoleName}}:{{ range .FunctionCall }}"
                "[{{.FunctionCall.Name}}({{.FunctionCall.Arguments}}) "
                "{{.ID}} {{.Type}} {{.Index}} {{.function.name}}]{{end}}{{.Content}}"
            }
        }
    )
    assert (
        r.chat(CONVERSATION[2:3]) == 'assistant:[get_weather({"city":"Paris"}) call_1 function 0 get_weather]'
    )


def test_template_file_reference_and_model_default(tmp_path: Path) -> None:
    (tmp_path / "chatml-msg.tmpl").write_text("<{{.RoleName}}>{{.Content}}\n")
    (tmp_path / "model.gguf.tmpl").write_text("Q: {{.Input}}\nA:")
    r = renderer(
        {"parameters": {"model": "model.gguf"}, "template": {"chat_message": "chatml-msg"}}, tmp_path
    )
    assert r.chat([{"role": "user", "content": "hi"}]) == "Q: <user>hi\n\nA:"
    assert r.completion("2+2") == "Q: 2+2\nA:"
    assert r.edit("fix", "x") == "Q: x\nA:"
    explicit = renderer(
        {"parameters": {"model": "model.gguf"}, "template": {"completion": "C {{.Input}}"}}, tmp_path
    )
    assert explicit.completion("x") == "C x"  # an explicit template wins over <model>.tmpl
    # a value that is not a file name in the models dir is an inline template
    assert (
        renderer({"template": {"completion": "../model.gguf"}}, tmp_path / "sub").completion("x")
        == "../model.gguf"
    )


def test_fallback_without_chat_message_uses_role_prefixes() -> None:
    r = renderer(
        {
            "roles": {"user": "USER: ", "assistant": "ASSISTANT:", "system": "SYSTEM: "},
            "system_prompt": "Default system.",
            "template": {
                "chat": "{{if not .SuppressSystemPrompt}}{{.SystemPrompt}}\n{{end}}{{.Input}}\nASSISTANT:"
            },
        }
    )
    messages = [{"role": "user", "content": "Hi"}, *CONVERSATION[2:3]]
    assert r.chat(messages) == (
        "Default system.\nUSER: Hi\nASSISTANT: "
        '[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather",'
        '"arguments":"{\\"city\\":\\"Paris\\"}"}}]\nASSISTANT:'
    )
    # a rendered system message suppresses the configured system prompt
    assert r.chat([{"role": "system", "content": "Mine."}, {"role": "user", "content": "Hi"}]) == (
        "SYSTEM: Mine.\nUSER: Hi\nASSISTANT:"
    )


def test_fallback_without_roles_and_separator() -> None:
    r = renderer({"template": {"join_chat_messages_by_character": ""}})
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b", "function_call": {"name": "f", "arguments": "{}"}},
    ]
    assert r.chat(messages) == 'ab\n{"arguments":"{}","name":"f"}'


def test_chat_message_error_falls_back_for_that_message_only() -> None:
    r = renderer(
        {
            "roles": {"assistant": "A: "},
            "template": {
                "chat_message": '{{ if eq .RoleName "user" }}U: {{.Content}}{{ else }}{{ .Nope }}{{ end }}'
            },
        }
    )
    assert (
        r.chat([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]) == "U: hi\nA: yo"
    )


def test_empty_chat_message_render_drops_the_message() -> None:
    r = renderer(
        {"template": {"chat_message": '{{ if ne .RoleName "system" }}{{.RoleName}}: {{.Content}}{{ end }}'}}
    )
    assert r.chat([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]) == "user: u"


def test_chat_message_variables() -> None:
    r = renderer(
        {
            "roles": {"user": "### User:"},
            "system_prompt": "SP",
            "grammar": "root ::= x",
            "template": {
                "chat_message": "{{.MessageIndex}} {{.Role}} {{.RoleName}} {{.FunctionName}} "
                "{{.LastMessage}} {{.Function}} {{.SystemPrompt}} [{{.FunctionCall}}]"
            },
        }
    )
    assert r.chat([{"role": "user", "content": "a"}, {"role": "tool", "content": "b", "name": "f"}]) == (
        "0 ### User: user  false false SP [<no value>]\n1  tool f true true SP [<no value>]"
    )


def test_chat_render_error_falls_back_to_the_joined_messages() -> None:
    r = renderer({"template": {"chat": "{{.Prompt}} never", "chat_message": "{{.Content}}"}})
    assert r.chat([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]) == "a\nb"
    assert renderer({"template": {"completion": "{{ index .Input 99 }}"}}).completion("raw") == "raw"


def test_system_is_an_alias_of_system_prompt_and_prompt_data() -> None:
    r = renderer(
        {
            "system_prompt": "SP",
            "template": {
                "chat": "{{.System}}|{{.ReasoningEffort}}|{{.Metadata.user}}|{{.Metadata.nope}}"
                "|{{.Instruction}}",
                "edit": "{{.Instruction}}: {{.Input}}",
            },
        }
    )
    prompt = r.chat([{"role": "user", "content": "x"}], metadata={"user": "ann"}, reasoning_effort="high")
    assert prompt == "SP|high|ann|<no value>|"
    assert r.edit("Fix spelling", "teh") == "Fix spelling: teh"


def test_nil_metadata_and_functions_behave_like_typed_nils() -> None:
    r = renderer(
        {
            "template": {
                "chat": "{{ toJson .Metadata }} {{ .Metadata.x }} "
                "{{ toJson .Functions }} {{ len .Functions }}"
            }
        }
    )
    assert r.chat([{"role": "user", "content": "x"}]) == "null <no value> null 0"


def test_multimodal_markers_and_running_ids() -> None:
    r = renderer({"template": {"chat_message": "{{.Content}}"}})
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}
    video = {"type": "video_url", "video_url": {"url": "x"}}
    messages = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "look "}, image, {"type": "text", "text": "here"}],
        },
        {"role": "user", "content": [video, {"type": "text", "text": "a"}]},
        {"role": "user", "content": [video, {"type": "text", "text": "b"}]},
    ]
    assert r.chat(messages) == "<__media__>look here\n[vid-0]a\n[vid-1]b"


def test_load_errors_name_the_template() -> None:
    with pytest.raises(TemplateError) as info:
        renderer({"template": {"chat": "ok", "chat_message": "{{ if .X }}\n  {{ .Y | nosuch }}\n{{ end }}"}})
    assert str(info.value) == 'template.chat_message: line 2, column 11: function "nosuch" not defined'


CHATML_JINJA = (
    "{{ bos_token }}{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if tools %}{{ tools | tojson }}\n{% endif %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    "{% if enable_thinking is defined %}think={{ enable_thinking }}{% endif %}"
)


def test_use_tokenizer_template_from_model_metadata() -> None:
    r = renderer(
        {
            "template": {"use_tokenizer_template": True, "reply_prefix": "<think>"},
            "chat_template_kwargs": {"x": 1},
        },
        model_info_chat_template=CHATML_JINJA,
        bos_token="<s>",
    )
    assert r.uses_tokenizer_template
    assert r.reply_prefix == "<think>"
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi <b>"}]
    assert (
        r.chat(messages)
        == "<s><|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi <b><|im_end|>\n<|im_start|>assistant\n"
    )
    tool = [{"type": "function", "function": {"name": "f"}}]
    assert r.chat(messages[1:], tools=tool, reasoning_effort="none") == (
        '<s><|im_start|>user\nHi <b><|im_end|>\n[{"type": "function", "function": {"name": "f"}}]\n'
        "<|im_start|>assistant\nthink=False"
    )


def test_request_metadata_adds_variables_but_never_replaces_the_templates_own() -> None:
    source = "{{ bos_token }}|{{ messages | length }}|{{ flavour | default('-') }}|{{ x }}"
    r = renderer(
        {"template": {"use_tokenizer_template": True}, "chat_template_kwargs": {"x": "set-by-config"}},
        model_info_chat_template=source,
        bos_token="<s>",
    )
    messages = [{"role": "user", "content": "Hi"}]
    hostile = {"bos_token": "<evil>", "messages": "[]", "x": "set-by-request", "flavour": "mint"}
    assert r.chat(messages, metadata=hostile) == "<s>|1|mint|set-by-config"


def test_tokenizer_template_generation_tag_and_raise_exception() -> None:
    source = (
        "{% for m in messages %}{% if m.role == 'tool' %}{{ raise_exception('no tools') }}{% endif %}"
        "{% generation %}{{ m.content }}{% endgeneration %}\n{% endfor %}"
    )
    r = renderer({"template": {"use_tokenizer_template": True}}, model_info_chat_template=source)
    # trim_blocks, as in HF: the newline after `{% endgeneration %}` goes
    assert r.chat([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]) == "ab"
    with pytest.raises(RenderError, match="no tools"):
        r.chat([{"role": "tool", "content": "a"}])


def test_use_tokenizer_template_from_tokenizer_config(tmp_path: Path) -> None:
    model_dir = tmp_path / "org" / "model"
    model_dir.mkdir(parents=True)
    (model_dir / "tokenizer_config.json").write_text(
        json.dumps(
            {"chat_template": CHATML_JINJA, "bos_token": {"content": "<|begin|>"}, "eos_token": "</s>"}
        )
    )
    r = renderer(
        {"parameters": {"model": "org/model"}, "template": {"use_tokenizer_template": True}}, tmp_path
    )
    assert (
        r.chat([{"role": "user", "content": "Hi"}])
        == "<|begin|><|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_use_tokenizer_template_without_a_template_fails_at_load(tmp_path: Path) -> None:
    with pytest.raises(
        TemplateError, match=r"template\.use_tokenizer_template: the model has no chat template"
    ):
        renderer({"parameters": {"model": "m.gguf"}, "template": {"use_tokenizer_template": True}}, tmp_path)


def test_native_jinja_chat_template_in_config() -> None:
    r = renderer(
        {
            "template": {
                "chat": "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}>> ",
                "chat_message": "{{ RoleName }}={{ Content }}",
            }
        }
    )
    assert r.chat([{"role": "user", "content": "hi"}]) == "[user] hi\n>> "
