"""Tiny Hugging Face models made on the spot (no downloads): a random Llama with a tokenizer trained
here, its OpenVINO IR export, and tiny random RWKV weights. Needs torch, transformers, tokenizers
(and optimum-intel for the export); import it only from tests marked `backends` or `gpu`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "hello world, this is a tiny model for tests",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z 0 1 2 3 4 5 6 7 8 9",
    "Ünïcödé ☃ text, émoji 🙂 and 中文 too",
] * 20


def train_tokenizer(vocab_size: int = 400) -> Any:
    """A byte-level BPE tokenizer trained on CORPUS, as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_llama(
    path: Path, *, seed: int = 0, max_positions: int = 256, hidden: int = 32, heads: int = 4
) -> Path:
    """Save a random two-layer Llama and its tokenizer under `path` (vLLM wants head size >= 32)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = train_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=max(heads // 2, 1),
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def export_openvino(source: Path, target: Path, *, features: bool = False) -> Path:
    """Export a checkpoint to OpenVINO IR (openvino_model.xml/.bin) with optimum-intel."""
    from optimum.intel import OVModelForCausalLM, OVModelForFeatureExtraction
    from transformers import AutoTokenizer

    cls: Any = OVModelForFeatureExtraction if features else OVModelForCausalLM
    model = cls.from_pretrained(source, export=True, compile=False)
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(source).save_pretrained(target)
    return target


def quantize_gptq(source: Path, target: Path, *, weights_base_name: str, device: str = "cpu") -> Path:
    """Quantize a checkpoint to 4-bit GPTQ (group size 32) with GPTQModel, calibrated on CORPUS, and
    store its weights as `{weights_base_name}.safetensors`, as TheBloke's GPTQ repositories name them.

    GPTQ's group size must divide every linear layer's input width: build `source` with
    `tiny_llama(hidden=128)` or another multiple of 32."""
    from gptqmodel import GPTQModel, QuantizeConfig
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    model = GPTQModel.load(str(source), QuantizeConfig(bits=4, group_size=32, desc_act=False), device=device)
    model.quantize(CORPUS[:8], tokenizer=tokenizer, batch_size=1)
    model.save(str(target))
    (target / "model.safetensors").rename(target / f"{weights_base_name}.safetensors")
    return target
