"""`ModelConfig`: one LocalAI model YAML, key for key — the single source of truth for a model.

The runtime loads it, the operator renders it, the CRD is generated from it and the importer converts
files through it. Keys are LocalAI's, snake_case, verbatim. Types follow LocalAI's Go structs
(see ``shared/reference/localai-schema.md``); ranges and enums appear only where LocalAI has them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from annotated_types import Ge, Le
from pydantic import field_validator, model_validator

from .backends import BACKEND_NAME_PATTERN
from .blocks import (
    AutoGPTQConfig,
    DiffusersConfig,
    DownloadFile,
    FunctionsConfig,
    GRPCSettings,
    LimitMMPerPrompt,
    Limits,
    LocalAIBlock,
    NonNegInt,
    Parameters,
    ReasoningConfig,
    TemplateConfig,
    TTSConfig,
    opt,
)
from .model_sources import FetchError, local_model_name, looks_like_uri
from .scalars import LenientStr

Passthrough = dict[str, Any]
"""A LocalAI platform block we accept and keep untyped (pipeline, mcp, agent, router, proxy, …)."""


def _safe_relative_path(value: str | None, field: str) -> str | None:
    """LocalAI's Validate(): no absolute paths and no `..` in names that address the models dir."""
    if value is not None and (value.startswith("/") or ".." in value):
        raise ValueError(f"{field} must be relative to the models directory and must not contain '..'")
    return value


class ModelConfig(LocalAIBlock):
    """A LocalAI model configuration (one mapping of a LocalAI model YAML file)."""

    # Identity, metadata, lifecycle
    name: LenientStr | None = opt("Model name used in the API's `model` field.")
    backend: LenientStr | None = opt(
        "Backend: llama (aliases llama-cpp, go-llama), llama-ggml, vllm, transformers "
        "(aliases sentencetransformers, huggingface-embeddings), autogptq, exllama, exllama2, rwkv. "
        "Empty: detected from the model file."
    )
    description: LenientStr | None = opt("Human description.")
    usage: LenientStr | None = opt("Usage notes.")
    known_usecases: list[LenientStr] | None = opt(
        "Declared capabilities (chat, completion, edit, embeddings, …)."
    )
    known_input_modalities: list[LenientStr] | None = opt("Input modalities (text, image, audio, video).")
    known_output_modalities: list[LenientStr] | None = opt("Output modalities.")
    alias: LenientStr | None = opt(
        "Make this a redirect: requests for `name` are answered by the model named here (one hop; with "
        "`name`, without `backend` or `parameters.model`). Runs nothing itself; the router and "
        "`localmodel up` route the name, and a runtime whose model file lists it answers to it."
    )
    disabled: bool | None = opt("Refuse to serve this model.")
    pinned: bool | None = opt("Exclude from idle unloading.")
    concurrency_groups: list[LenientStr] | None = opt("Mutual-exclusion groups.")
    feature_flags: dict[str, bool | None] | None = opt("Experimental per-model flags.")
    debug: bool | None = opt("Debug logging for this model.")
    limits: Limits | None = opt("Admission control.")

    # Model files
    parameters: Parameters | None = opt("Model file and default request parameters.")
    mmproj: LenientStr | None = opt(
        "Multimodal projector GGUF (or a URI fetched like parameters.model): chat messages may carry "
        "images (served by: llama)."
    )
    draft_model: LenientStr | None = opt(
        "Draft GGUF for speculative decoding, with the model's vocabulary (served by: llama)."
    )
    download_files: list[DownloadFile] | None = opt("Files fetched into the models directory before loading.")
    artifacts: list[dict[str, Any]] | None = opt("Managed Hugging Face snapshots (LocalAI platform feature).")
    model_base_name: LenientStr | None = opt("AutoGPTQ: base name of the quantized weights file.")
    autogptq: AutoGPTQConfig | None = opt("Legacy AutoGPTQ block.")

    # Load time (mostly llama.cpp)
    context_size: Annotated[int, Ge(-1)] | None = opt(
        "Context window in tokens; -1 = the model's trained context."
    )
    threads: NonNegInt | None = opt("CPU threads (0 = all cores).")
    f16: bool | None = opt("16-bit KV cache / float16 weights.")
    gpu_layers: Annotated[int, Ge(-1)] | None = opt("Layers offloaded to the GPU (-1 = all that fit).")
    main_gpu: LenientStr | None = opt(
        "Main GPU: an index for llama.cpp; `cuda`, `cuda.N` or an OpenVINO device (AUTO, CPU, GPU, NPU, "
        "MULTI:…, HETERO:…, AUTO:-CPU) for transformers."
    )
    tensor_split: LenientStr | None = opt('Split across GPUs, e.g. "0.8,0.2".')
    mmap: bool | None = opt("Memory-map the weights (default true).")
    mmlock: bool | None = opt("Lock the weights in memory.")
    low_vram: bool | None = opt("Low VRAM mode.")
    numa: bool | None = opt("NUMA (legacy go-llama).")
    no_mulmatq: bool | None = opt("Disable mul_mat_q kernels (legacy go-llama).")
    rms_norm_eps: float | None = opt("GGMLv3 LLaMA-2 70B parameter (legacy).")
    ngqa: int | None = opt("GGMLv3 grouped-query parameter (legacy).")
    embeddings: bool | None = opt("Load the model for embeddings.")
    reranking: bool | None = opt(
        "Load a reranking model for /v1/rerank: a GGUF with rank pooling (llama) or a sentence-transformers "
        "CrossEncoder (transformers)."
    )
    flash_attention: LenientStr | None = opt("auto | on | off | enabled | disabled.")
    no_kv_offloading: bool | None = opt("Keep the KV cache on the CPU.")
    cache_type_k: LenientStr | None = opt("KV cache quantization for K (f16, f32, q8_0, q4_0, …).")
    cache_type_v: LenientStr | None = opt("KV cache quantization for V.")
    rope_scaling: Literal["none", "linear", "yarn"] | None = opt("RoPE scaling type.")
    yarn_ext_factor: float | None = opt("YaRN extrapolation mix factor.")
    yarn_attn_factor: float | None = opt("YaRN attention magnitude factor.")
    yarn_beta_fast: float | None = opt("YaRN low correction dimension.")
    yarn_beta_slow: float | None = opt("YaRN high correction dimension.")
    lora_adapter: LenientStr | None = opt("LoRA adapter file (GGUF, llama backend).")
    lora_base: LenientStr | None = opt("LoRA base model file (ignored: llama.cpp adapts the loaded model).")
    lora_scale: float | None = opt("Scale of lora_adapter (0 = unset = 1.0).")
    lora_adapters: list[LenientStr] | None = opt(
        "Several LoRA adapter files applied together, after lora_adapter (served by: llama)."
    )
    lora_scales: list[float] | None = opt(
        "Scale of each lora_adapters entry in order; a missing one is 1.0, 0 turns it off (served by: llama)."
    )
    n_draft: NonNegInt | None = opt(
        "Maximum draft tokens per speculative step (0 = LocalAI's default 16; served by: llama)."
    )
    type: LenientStr | None = opt(
        "Model class: AutoModelForCausalLM, OVModelForCausalLM, OVModelForFeatureExtraction, "
        "SentenceTransformer, … (transformers)."
    )
    cuda: bool | None = opt("Explicit CUDA (diffusers and audio backends).")
    options: list[LenientStr] | None = opt("Free-form backend options, `key:value` or a bare flag.")
    overrides: list[LenientStr] | None = opt("llama.cpp GGUF metadata overrides KEY=TYPE:VALUE.")
    grpc: GRPCSettings | None = opt("Backend start-up health checks (LocalAI).")
    cfg_scale: float | None = opt("Classifier-free guidance scale.")
    step: int | None = opt("Default diffusion steps.")

    # vLLM-style engine keys
    quantization: LenientStr | None = opt(
        "Quantization: vLLM methods (awq, gptq, fp8, …) "
        "or transformers bnb_4bit, bnb_8bit, xpu_4bit, xpu_8bit."
    )
    load_format: LenientStr | None = opt("Weight load format (vLLM).")
    gpu_memory_utilization: Annotated[float, Ge(0), Le(1)] | None = opt("Share of GPU memory vLLM may use.")
    trust_remote_code: bool | None = opt("Run code shipped with a Hugging Face model (off unless set).")
    enforce_eager: bool | None = opt("Disable CUDA graphs (vLLM).")
    swap_space: NonNegInt | None = opt("CPU swap space in GiB (vLLM).")
    max_model_len: NonNegInt | None = opt("Maximum sequence length (vLLM).")
    tensor_parallel_size: NonNegInt | None = opt("Tensor-parallel degree: GPUs per replica (vLLM).")
    disable_log_stats: bool | None = opt("Disable vLLM's stats logging.")
    dtype: LenientStr | None = opt("Weights dtype: float16, bfloat16, …")
    limit_mm_per_prompt: LimitMMPerPrompt | None = opt("Multimodal items per prompt (vLLM).")
    engine_args: dict[str, Any] | None = opt("Engine keyword arguments passed through unchanged (vLLM).")

    # Prompting and output post-processing
    template: TemplateConfig | None = opt("Prompt templates.")
    roles: dict[str, LenientStr] | None = opt("Role name → prefix (.Role in chat_message).")
    system_prompt: LenientStr | None = opt("Exposed to templates as .SystemPrompt; never injected otherwise.")
    stopwords: list[LenientStr] | None = opt("Stop sequences; a request's `stop` is added to them.")
    cutstrings: list[LenientStr] | None = opt("Regexes removed from the output.")
    extract_regex: list[LenientStr] | None = opt("Regexes whose matches replace the output.")
    trimspace: list[LenientStr] | None = opt("Prefixes trimmed (with whitespace) from the output.")
    trimsuffix: list[LenientStr] | None = opt("Suffixes trimmed (with whitespace) from the output.")
    grammar: LenientStr | None = opt("GBNF grammar applied to every request.")
    prompt_cache_path: LenientStr | None = opt("Prompt cache file, relative to the models directory.")
    prompt_cache_all: bool | None = opt("Cache every prompt (llama.cpp cache_prompt; default true).")
    prompt_cache_ro: bool | None = opt("Read-only prompt cache (legacy).")
    mirostat: Literal[0, 1, 2] | None = opt("Mirostat sampling: 0 off, 1, 2.")
    mirostat_tau: float | None = opt("Mirostat target entropy (default 5.0).")
    mirostat_eta: float | None = opt("Mirostat learning rate (default 0.1).")
    reasoning_effort: LenientStr | None = opt("Default reasoning effort: none, minimal, low, medium, high.")
    chat_template_kwargs: dict[str, Any] | None = opt("Keyword arguments for the model's own chat template.")
    function: FunctionsConfig | None = opt("Tool calling.")
    reasoning: ReasoningConfig | None = opt("Reasoning extraction.")

    # Other backends' blocks and LocalAI platform features, kept as given
    diffusers: DiffusersConfig | None = opt("Diffusers settings.")
    tts: TTSConfig | None = opt("Text-to-speech settings.")
    pipeline: Passthrough | None = opt("Realtime pipeline (LocalAI platform feature; kept, not served).")
    mcp: Passthrough | None = opt("MCP servers (LocalAI platform feature; kept, not served).")
    agent: Passthrough | None = opt("Agent settings (LocalAI platform feature; kept, not served).")
    router: Passthrough | None = opt("Model router (LocalAI platform feature; kept, not served).")
    proxy: Passthrough | None = opt("Cloud proxy (LocalAI platform feature; kept, not served).")
    mitm: Passthrough | None = opt("MITM hosts (LocalAI platform feature; kept, not served).")
    pii: Passthrough | None = opt("PII redaction (LocalAI platform feature; kept, not served).")
    pii_detection: Passthrough | None = opt(
        "PII detector settings (LocalAI platform feature; kept, not served)."
    )
    compression: Passthrough | None = opt(
        "Chat-history compression (LocalAI platform feature; kept, not served)."
    )

    @field_validator("backend")
    @classmethod
    def _backend_name(cls, value: str | None) -> str | None:
        if value is not None and not BACKEND_NAME_PATTERN.match(value.replace(".", "-")):
            raise ValueError("backend must match ^[a-zA-Z0-9_-]+$")
        return _safe_relative_path(value, "backend")

    @field_validator("draft_model", "lora_adapter", "prompt_cache_path")
    @classmethod
    def _relative_files(cls, value: str | None) -> str | None:
        return _safe_relative_path(value, "path")

    @field_validator("mmproj")
    @classmethod
    def _relative_mmproj(cls, value: str | None) -> str | None:
        # A URI is fetched to a checked name, like parameters.model's.
        return value if value and looks_like_uri(value) else _safe_relative_path(value, "path")

    @field_validator("lora_adapters")
    @classmethod
    def _relative_adapters(cls, value: list[str] | None) -> list[str] | None:
        for item in value or []:
            _safe_relative_path(item, "each path")
        return value

    @model_validator(mode="after")
    def _relative_model(self) -> ModelConfig:
        # A URI is fetched to a checked name (fetch.target_path); anything else names a file or a
        # repository id under the models directory, and must stay there.
        model = self.parameters.model if self.parameters else None
        if model and not looks_like_uri(model):
            _safe_relative_path(model, "parameters.model")
        return self

    @model_validator(mode="after")
    def _alias(self) -> ModelConfig:
        # LocalAI's Validate() rules for an alias.
        if self.alias is not None:
            if not self.name:
                raise ValueError("alias needs `name`: the name that is redirected")
            if self.alias == self.name:
                raise ValueError("alias must name another model, not itself")
            if self.backend or (self.parameters and self.parameters.model):
                raise ValueError("an alias must not set backend or parameters.model: it only redirects")
        return self

    @property
    def model_uri(self) -> str | None:
        """`parameters.model` when it is a URI that `localmodel-runtime fetch` downloads, else None."""
        model = self.parameters.model if self.parameters else None
        return model if model and looks_like_uri(model) else None

    @property
    def model_file(self) -> str | None:
        """What the backend loads: `parameters.model`, or for a URI the file it is fetched to (LocalAI
        allows `model: huggingface://owner/repo/file.gguf`)."""
        return _local_file(self.parameters.model if self.parameters else None)

    @property
    def mmproj_uri(self) -> str | None:
        """`mmproj` when it is a URI that `localmodel-runtime fetch` downloads, else None."""
        return self.mmproj if self.mmproj and looks_like_uri(self.mmproj) else None

    @property
    def mmproj_file(self) -> str | None:
        """The projector file the llama backend loads: `mmproj`, or for a URI the file it is fetched to."""
        return _local_file(self.mmproj)

    @property
    def option_values(self) -> dict[str, str]:
        """LocalAI's `options:` list (`key:value` or a bare flag) as a dict; bare flags map to "true"."""
        parsed: dict[str, str] = {}
        for option in self.options or []:
            key, sep, value = option.partition(":")
            parsed[key.strip()] = value.strip() if sep else "true"
        return parsed


def _local_file(value: str | None) -> str | None:
    """A file of the models directory: `value`, or for a URI the name it is fetched to."""
    if value and looks_like_uri(value):
        try:
            return local_model_name(value)
        except FetchError:
            return value  # the fetch step reports it
    return value


# Keys a LocalModel accepts and keeps but that localmodel does not act on (yet). They are reported in
# `status.unsupported` (and by the importer) when set, so nothing is dropped silently.
NOT_SERVED: frozenset[str] = frozenset(
    {
        "pinned",
        "concurrency_groups",
        "feature_flags",
        "artifacts",
        "numa",
        "no_mulmatq",
        "rms_norm_eps",
        "ngqa",
        "cuda",
        "grpc",
        "cfg_scale",
        "step",
        "load_format",
        "disable_log_stats",
        "limit_mm_per_prompt",
        "prompt_cache_ro",
        # Tool calls are served as JSON (name/arguments keys, no-action answer, parallel calls, grammar
        # on or off); LocalAI's regex, XML and mixed-text parsing of replies is not.
        "function.response_regex",
        "function.json_regex_match",
        "function.argument_regex",
        "function.argument_regex_key_name",
        "function.argument_regex_value_name",
        "function.replace_function_results",
        "function.replace_llm_results",
        "function.capture_llm_results",
        "function.xml_format_preset",
        "function.xml_format",
        "function.automatic_tool_parsing_fallback",
        "function.disable_peg_parser",
        "function.grammar.disable_parallel_new_lines",
        "function.grammar.mixed_mode",
        "function.grammar.no_mixed_free_string",
        "function.grammar.prefix",
        "function.grammar.expect_strings_after_json",
        "function.grammar.properties_order",
        "function.grammar.schema_type",
        "function.grammar.triggers",
        "reasoning",
        "reasoning_effort",
        "diffusers",
        "tts",
        "pipeline",
        "mcp",
        "agent",
        "router",
        "proxy",
        "mitm",
        "pii",
        "pii_detection",
        "compression",
        "no_kv_offloading",
        "overrides",
        "parameters.tfz",
        "parameters.clip_skip",
        "parameters.negative_prompt",
        "parameters.negative_prompt_scale",
        "parameters.language",
        "parameters.translate",
        "parameters.pooling",
        "parameters.pooling_half_life_tokens",
    }
)


# Keys that only some backends act on (canonical backend names): set on a model served by another
# backend, they are listed in `status.unsupported` like the NOT_SERVED ones.
SERVED_BY: dict[str, frozenset[str]] = {
    "lora_adapters": frozenset({"llama"}),
    "lora_scales": frozenset({"llama"}),
    "reranking": frozenset({"llama", "transformers"}),
    "draft_model": frozenset({"llama"}),
    "n_draft": frozenset({"llama"}),
    "mmproj": frozenset({"llama"}),
    # The multimodal template places the markers of a message's images; only a model that reads images
    # needs them.
    "template.multimodal": frozenset({"llama"}),
}
