"""Prompt rendering: LocalAI's chat algorithm (`TemplateMessages`) and the completion/edit templates.

Decisions where LocalAI's documentation and code disagree:

* `.System` (shown in the docs) is an alias of `.SystemPrompt`; `.Prompt` and `.Messages` stay errors,
  which fall back to the untemplated text as in LocalAI.
* `.Function` (chat_message) is true on the last message when the config sets `grammar`; a grammar
  derived from tools is the server's concern and not known here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from localmodel_runtime.config import ModelConfig

from .engine import PromptTemplate, RenderError, TemplateError
from .govalues import GoStruct, NilList, NilMap, go_json
from .hf import TokenizerTemplate, find_tokenizer_template
from .tool_structs import as_json_numbers, function_struct, tool_call_struct

__all__ = ["PromptRenderer", "RenderError", "TemplateError"]

log = logging.getLogger(__name__)

MEDIA_MARKER = "<__media__>"
"""llama.cpp's marker for one image in a prompt (mtmd's default)."""
DEFAULT_MULTIMODAL = (
    "{{ range .Audio }}<__media__>{{end}}{{ range .Images }}<__media__>{{end}}"
    "{{ range .Video }}[vid-{{.ID}}]{{end}}{{.Text}}"
)
_NO_ACTION_DESCRIPTION = "use this action to answer without performing any action"


class PromptRenderer:
    """Renders a model's prompts from its config; templates are loaded (and translated) once."""

    def __init__(
        self,
        config: ModelConfig,
        templates: dict[str, PromptTemplate],
        tokenizer_template: TokenizerTemplate | None,
    ) -> None:
        template = config.template
        self.config = config
        self.templates = templates
        self.tokenizer_template = tokenizer_template
        self.uses_tokenizer_template = bool(template and template.use_tokenizer_template)
        self.reply_prefix: str = (template.reply_prefix if template else None) or ""
        self.roles: dict[str, str] = dict(config.roles or {})
        self.system_prompt: str = config.system_prompt or ""
        self.separator: str = "\n"
        if template and template.join_chat_messages_by_character is not None:
            self.separator = template.join_chat_messages_by_character

    @classmethod
    def from_config(
        cls,
        config: ModelConfig,
        models_dir: Path,
        *,
        model_info_chat_template: str | None = None,
        bos_token: str = "",
        eos_token: str = "",
    ) -> PromptRenderer:
        """Load every template of `config`; raises :class:`TemplateError` for one that cannot be used."""
        tc = config.template
        model = config.model_file
        default_file = _read_tmpl(models_dir, model) if model else None
        templates: dict[str, PromptTemplate] = {}
        for kind in ("chat", "chat_message", "completion", "edit", "function", "multimodal"):
            value = getattr(tc, kind, None) if tc else None
            if value:
                templates[kind] = PromptTemplate(f"template.{kind}", _read_tmpl(models_dir, value) or value)
            elif default_file is not None and kind in ("chat", "completion", "edit", "function"):
                templates[kind] = PromptTemplate(f"{model}.tmpl", default_file)
        if "multimodal" not in templates:
            templates["multimodal"] = PromptTemplate("template.multimodal", DEFAULT_MULTIMODAL)
        tokenizer: TokenizerTemplate | None = None
        if tc and tc.use_tokenizer_template:
            if model_info_chat_template:
                tokenizer = TokenizerTemplate(
                    "tokenizer.chat_template", model_info_chat_template, bos_token, eos_token
                )
            else:
                found = find_tokenizer_template(models_dir, model)
                if found is None:
                    raise TemplateError(
                        "template.use_tokenizer_template",
                        "the model has no chat template: no tokenizer.chat_template in the model's metadata "
                        f"and no tokenizer_config.json/chat_template.jinja next to {model!r} in {models_dir}",
                    )
                source, where, bos, eos = found
                tokenizer = TokenizerTemplate(where, source, bos_token or bos, eos_token or eos)
        return cls(config, templates, tokenizer)

    # chat -------------------------------------------------------------------------------------
    def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = None,
        metadata: dict[str, str] | None = None,
        reasoning_effort: str | None = None,
    ) -> str:
        if self.tokenizer_template is not None:
            return self._chat_tokenizer(messages, tools, tool_choice, metadata, reasoning_effort)
        parts, suppress = self._messages(messages)
        joined = self.separator.join(parts)
        use_tools = bool(tools) and tool_choice != "none"
        name = "function" if use_tools and "function" in self.templates else "chat"
        template = self.templates.get(name)
        if template is None:
            return joined
        data = self._prompt_data(
            joined,
            "",
            suppress,
            self._functions(tools, tool_choice) if use_tools else None,
            reasoning_effort,
            metadata,
        )
        extra = {
            "messages": messages,
            "tools": tools,
            "add_generation_prompt": True,
            **(self.config.chat_template_kwargs or {}),
        }
        return self._render_or(template, data, joined, extra)

    def _messages(self, messages: list[dict[str, Any]]) -> tuple[list[str], bool]:
        chat_message = self.templates.get("chat_message")
        grammar = bool(self.config.grammar)
        counters = {"image": 0, "audio": 0, "video": 0}
        parts: list[str] = []
        suppress = False
        last = len(messages) - 1
        for idx, message in enumerate(messages):
            role = str(message.get("role", ""))
            tool_calls = message.get("tool_calls") or None
            function_call = message.get("function_call")
            if (
                (function_call or tool_calls)
                and role == "assistant"
                and self.roles.get("assistant_function_call")
            ):
                role = "assistant_function_call"
            prefix = self.roles.get(role, "")
            text = self._text(message.get("content"), counters)
            calls = [tool_call_struct(i, c) for i, c in enumerate(tool_calls)] if tool_calls else None
            legacy = as_json_numbers(function_call) if function_call is not None else None
            content = ""
            if chat_message is not None:
                data = GoStruct(
                    "templates.ChatMessageTemplateData",
                    {
                        "SystemPrompt": self.system_prompt,
                        "Role": prefix,
                        "RoleName": role,
                        "FunctionName": message.get("name") or "",
                        "Content": text,
                        "MessageIndex": idx,
                        "Function": grammar and idx == last,
                        "FunctionCall": calls if calls else legacy,
                        "LastMessage": idx == last,
                    },
                )
                try:
                    rendered = chat_message.render(data, {"message": message})
                except RenderError as exc:
                    log.error("chat_message failed for message %d, using the role prefix: %s", idx, exc)
                else:
                    if rendered == "":
                        continue  # LocalAI drops a message whose template renders nothing
                    content = rendered
            if content == "":
                content = self._fallback(prefix, text, legacy, calls)
                if text and role == "system":
                    suppress = True
            parts.append(content)
        return parts, suppress

    @staticmethod
    def _fallback(prefix: str, text: str, legacy: Any, calls: list[GoStruct] | None) -> str:
        """LocalAI's message rendering without (or after a failed) chat_message template."""
        content = prefix + text if text else ""
        for value in (legacy, calls):
            if value is None:
                continue
            encoded = go_json(value)
            if prefix:
                encoded = prefix + " " + encoded
            content = content + "\n" + encoded if text else encoded
        return content

    def _text(self, content: Any, counters: dict[str, int]) -> str:
        if content is None:
            return ""
        if isinstance(content, str):
            return content
        if not isinstance(content, list):
            return str(content)
        text = ""
        counts = {"image": 0, "audio": 0, "video": 0}
        for part in content:
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind == "text":
                text += str(part.get("text", ""))
            elif kind in ("image_url", "image"):
                counts["image"] += 1
            elif kind in ("input_audio", "audio_url", "audio"):
                counts["audio"] += 1
            elif kind in ("video_url", "video"):
                counts["video"] += 1
        items: dict[str, list[GoStruct]] = {}
        for kind, count in counts.items():
            counters[kind] += count
            first = counters[kind] - count
            items[kind] = [GoStruct("templates.MultimodalContent", {"ID": first + i}) for i in range(count)]
        data = GoStruct(
            "templates.MultiModalData",
            {
                "Audio": items["audio"],
                "Images": items["image"],
                "Video": items["video"],
                "Text": text,
            },
        )
        try:
            return self.templates["multimodal"].render(data)
        except RenderError as exc:
            log.error("multimodal template failed, using the text only: %s", exc)
            return text

    def _functions(self, tools: list[dict[str, Any]] | None, tool_choice: Any) -> list[GoStruct]:
        functions: list[GoStruct] = []
        for tool in tools or []:
            fn = tool.get("function") if tool.get("type", "function") == "function" else None
            if isinstance(fn, dict):
                functions.append(
                    function_struct(
                        str(fn.get("name", "")),
                        str(fn.get("description", "") or ""),
                        bool(fn.get("strict", False)),
                        fn.get("parameters"),
                    )
                )
        forced = tool_choice.get("function", {}).get("name") if isinstance(tool_choice, dict) else None
        if forced:
            return [f for f in functions if f.fields["Name"] == forced]
        fc = self.config.function
        grammar_disabled = bool(fc and fc.grammar and fc.grammar.disable)
        strict = any(f.fields["Strict"] for f in functions)
        if not grammar_disabled and not (fc and fc.disable_no_action) and not strict:
            # LocalAI's no-action function, offered when a grammar constrains the reply to a call.
            functions.append(
                function_struct(
                    (fc.no_action_function_name if fc else None) or "answer",
                    (fc.no_action_description_name if fc else None) or _NO_ACTION_DESCRIPTION,
                    False,
                    {
                        "properties": {
                            "message": {"type": "string", "description": "The message to reply the user with"}
                        }
                    },
                )
            )
        return functions

    # completion and edit ----------------------------------------------------------------------
    def completion(self, prompt: str) -> str:
        template = self.templates.get("completion")
        if template is None:
            return prompt
        return self._render_or(template, self._prompt_data(prompt, "", False, None, None, None), prompt)

    def edit(self, instruction: str, input: str) -> str:
        template = self.templates.get("edit")
        if template is None:
            return input
        return self._render_or(
            template, self._prompt_data(input, instruction, False, None, None, None), input
        )

    # helpers ----------------------------------------------------------------------------------
    def _prompt_data(
        self,
        input: str,
        instruction: str,
        suppress: bool,
        functions: list[GoStruct] | None,
        reasoning_effort: str | None,
        metadata: dict[str, str] | None,
    ) -> GoStruct:
        data = GoStruct(
            "templates.PromptTemplateData",
            {
                "SystemPrompt": self.system_prompt,
                "SuppressSystemPrompt": suppress,
                "Input": input,
                "Instruction": instruction,
                "Functions": NilList() if functions is None else functions,
                "MessageIndex": 0,
                "ReasoningEffort": reasoning_effort or "",
                "Metadata": NilMap() if metadata is None else dict(metadata),
            },
        )
        data.aliases["System"] = "SystemPrompt"
        return data

    def _render_or(
        self, template: PromptTemplate, data: GoStruct, fallback: str, extra: dict[str, Any] | None = None
    ) -> str:
        try:
            return template.render(data, extra)
        except RenderError as exc:
            log.error("%s failed, using the untemplated input: %s", template.name, exc)
            return fallback

    def _chat_tokenizer(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        tool_choice: Any,
        metadata: dict[str, str] | None,
        reasoning_effort: str | None,
    ) -> str:
        assert self.tokenizer_template is not None
        kwargs: dict[str, Any] = dict(self.config.chat_template_kwargs or {})
        effort = reasoning_effort or self.config.reasoning_effort
        if effort:
            kwargs["reasoning_effort"] = effort
            if effort == "none":
                kwargs["enable_thinking"] = False
        # A request's metadata adds variables; it never replaces the template's own (bos_token, messages,
        # ...) or what the model's configuration set.
        for key, value in (metadata or {}).items():
            if key not in RESERVED_VARIABLES and key not in kwargs:
                kwargs[key] = value
        messages = [_marked_images(message) for message in messages]
        return self.tokenizer_template.render(messages, tools if tool_choice != "none" else None, kwargs)


def _marked_images(message: dict[str, Any]) -> dict[str, Any]:
    """A message whose content parts include images, as text with a media marker per image (what
    llama-server gives a chat template): a model's template renders text content whatever it expects
    of images, and llama.cpp finds the images at the markers."""
    content = message.get("content")
    if not isinstance(content, list) or not any(
        isinstance(part, dict) and part.get("type") == "image_url" for part in content
    ):
        return message
    text = ""
    for part in content:
        if isinstance(part, dict) and part.get("type") == "image_url":
            text += MEDIA_MARKER
        elif isinstance(part, dict) and part.get("type") == "text":
            text += str(part.get("text", ""))
    return {**message, "content": text}


RESERVED_VARIABLES = frozenset({"messages", "tools", "add_generation_prompt", "bos_token", "eos_token"})


def _read_tmpl(models_dir: Path, name: str) -> str | None:
    """The content of `<models_dir>/<name>.tmpl` when `name` is a file name there, else None."""
    if not name or "\n" in name or "{{" in name or len(name) > 255:
        return None
    root = models_dir.resolve()
    path = (root / f"{name}.tmpl").resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path.read_text(encoding="utf-8")
