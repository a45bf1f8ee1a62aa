"""Model cards as data (``data/models/*.toml``): architecture numbers, from which the
parameter counts, bytes per token of KV cache and FLOPs per token are derived."""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, fields
from enum import StrEnum

from starcompute.data import data_dir, preset_names
from starcompute.errors import InputError, UnknownPresetError


class Quant(StrEnum):
    """Weight quantisations the performance model prices (the CLI and scenarios use these)."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    FP8 = "fp8"
    INT8 = "int8"
    INT4 = "int4"


BYTES_PER_PARAM = {
    Quant.FP32: 4.0, Quant.FP16: 2.0, Quant.BF16: 2.0, Quant.FP8: 1.0, Quant.INT8: 1.0,
    Quant.INT4: 0.5,
}  # fmt: skip
# int4 weights carry one fp16 scale per 32-weight group: +0.0625 B/param (GGUF Q4_0-like)
QUANT_OVERHEAD = {Quant.INT4: 2.0 / 32.0}


@dataclass(frozen=True, slots=True)
class ModelCard:
    name: str
    family: str
    params_total_b: float  # published total
    layers: int
    hidden: int
    intermediate: int  # per expert for MoE
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied_embeddings: bool
    context: int
    params_active_b: float | None = None  # published activated parameters (MoE)
    experts: int = 0
    experts_per_token: int = 0

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    def attention_params(self) -> int:
        q = self.hidden * self.heads * self.head_dim
        kv = 2 * self.hidden * self.kv_heads * self.head_dim
        return 2 * q + kv  # q and o projections are the same size

    def mlp_params(self, experts: int | None = None) -> int:
        """Per layer: gate, up and down projections (of ``experts`` experts for MoE)."""
        n = (self.experts if experts is None else experts) if self.is_moe else 1
        router = self.hidden * self.experts if self.is_moe else 0
        return n * 3 * self.hidden * self.intermediate + router

    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    def params_total(self) -> int:
        """From the architecture (norm weights included)."""
        per_layer = self.attention_params() + self.mlp_params() + 2 * self.hidden
        return self.layers * per_layer + self.embedding_params() + self.hidden

    def params_per_layer(self) -> int:
        return self.attention_params() + self.mlp_params() + 2 * self.hidden

    def matmul_params_per_token(self) -> int:
        """Weights each token multiplies through: active layers plus the output head."""
        per_layer = self.attention_params() + self.mlp_params(self.experts_per_token)
        return self.layers * per_layer + self.vocab * self.hidden

    def kv_bytes_per_token(self, bytes_per_value: float = 2.0) -> float:
        return 2.0 * self.layers * self.kv_heads * self.head_dim * bytes_per_value

    def attention_flops(self, query_tokens: int, context_tokens: float) -> float:
        """QK^T and AV: 4 x layers x heads x head_dim per (query, key) pair."""
        return 4.0 * self.layers * self.heads * self.head_dim * query_tokens * context_tokens

    def weight_bytes(self, quant: str) -> float:
        return self.params_total() * bytes_per_param(quant)


def bytes_per_param(quant: str) -> float:
    try:
        q = Quant(quant)
    except ValueError:
        allowed = ", ".join(q.value for q in Quant)
        raise InputError(f"unknown quantisation {quant!r}: choose one of {allowed}") from None
    return BYTES_PER_PARAM[q] + QUANT_OVERHEAD.get(q, 0.0)


def model_cards() -> list[str]:
    return preset_names("models", ".toml")


@functools.cache  # a card is immutable; mission control reads it for every request
def load_card(name: str) -> ModelCard:
    if name not in model_cards():
        raise UnknownPresetError("model card", name, model_cards(), files_allowed=False)
    doc = tomllib.loads(data_dir("models").joinpath(f"{name}.toml").read_text(encoding="utf-8"))
    allowed = {f.name for f in fields(ModelCard)}
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise InputError(f"model card {name}: unknown key(s) {unknown}")
    return ModelCard(**doc)


FALLBACK_CARD = "qwen3-8b"  # the timing card when the served model has none of its own


def card_for_model(model: str) -> str | None:
    """The card of a served model by its name or path (``SmolLM2-135M-Instruct`` ->
    ``smollm2-135m``): the longest card name found in it, None when no card matches."""
    name = model.replace("\\", "/").rsplit("/", 1)[-1].lower()
    found = [c for c in model_cards() if c in name]
    return max(found, key=len) if found else None


def timing_card(asked: str | None, served_model: str) -> str:
    """The card timing inference: ``asked`` (checked), else the served model's own card,
    else :data:`FALLBACK_CARD`."""
    if asked is not None:
        load_card(asked)  # InputError naming the cards there are
        return asked
    return card_for_model(served_model) or FALLBACK_CARD
