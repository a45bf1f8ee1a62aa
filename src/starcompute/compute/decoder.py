"""A compact decoder-only transformer in plain PyTorch: the Llama, Qwen2 and Qwen3 family.

Why not ``transformers``' own model class: importing its modelling stack costs ~120 MB of
memory per process (measured: ``import torch`` 223 MB, then tokenizer and model classes
+190 MB before the weights), and the testbed runs one engine per satellite on one host.
This module needs only ``torch`` and ``safetensors``; it reads the same Hugging Face
checkpoint (``config.json`` + ``*.safetensors``, memory-mapped copy-on-write so the
processes on one host share the weights' pages) and computes the same function: RMSNorm in
float32, rotary position embedding ("default" type), grouped-query attention through
``scaled_dot_product_attention``, SiLU-gated MLP; Qwen2's q/k/v biases and Qwen3's
per-head q/k RMSNorm. ``tests/test_decoder.py`` checks it against ``transformers``'
``LlamaForCausalLM`` and ``Qwen3ForCausalLM`` (logits and greedy tokens).

What it leaves out, and refuses with a clear error (:func:`unsupported`): rope scaling
other than "default", sliding-window attention, and other architectures. The forward pass
keeps the interface the engine's batch loop calls (``input_ids``, ``attention_mask``,
``position_ids``, ``past_key_values``) and returns logits of the last position only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from starcompute.errors import InputError

MODEL_TYPES = ("llama", "qwen2", "qwen3")  # config.json's model_type
KV = tuple[torch.Tensor, torch.Tensor]  # one layer's keys and values
Rope = tuple[torch.Tensor, torch.Tensor]  # cos, sin
KVCache = list[KV]


def unsupported(config: dict[str, Any]) -> str | None:
    """Why this module cannot run a checkpoint's ``config.json``, or None when it can."""
    kind = config.get("model_type")
    if kind not in MODEL_TYPES:
        return f"model_type {kind!r} (supported: {', '.join(MODEL_TYPES)})"
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        return f"rope type {rope.get('rope_type', rope.get('type'))!r} (supported: default)"
    if config.get("use_sliding_window"):
        return "sliding-window attention"
    if config.get("hidden_act", "silu") != "silu":
        return f"activation {config.get('hidden_act')!r} (supported: silu)"
    return None


@dataclass
class Output:
    """What one forward pass returns (the fields the engine reads)."""

    logits: torch.Tensor  # [batch, kept, vocab]: the last position only by default
    past_key_values: KVCache


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(size), requires_grad=False)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)


class Attention(nn.Module):
    def __init__(self, c: SimpleNamespace) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = c.heads, c.kv_heads, c.head_dim
        bias = c.attention_bias
        self.q_proj = nn.Linear(c.hidden_size, c.heads * c.head_dim, bias=bias)
        self.k_proj = nn.Linear(c.hidden_size, c.kv_heads * c.head_dim, bias=bias)
        self.v_proj = nn.Linear(c.hidden_size, c.kv_heads * c.head_dim, bias=bias)
        self.o_proj = nn.Linear(c.heads * c.head_dim, c.hidden_size, bias=c.output_bias)
        self.qk_norm = c.qk_norm
        if c.qk_norm:
            self.q_norm = RMSNorm(c.head_dim, c.eps)
            self.k_norm = RMSNorm(c.head_dim, c.eps)

    def forward(
        self, x: torch.Tensor, rope: Rope, mask: torch.Tensor, past: KV | None
    ) -> tuple[torch.Tensor, KV]:
        b, s, _ = x.shape
        q = self.q_proj(x).view(b, s, self.heads, self.head_dim)
        k = self.k_proj(x).view(b, s, self.kv_heads, self.head_dim)
        v = self.v_proj(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = _rotate(q.transpose(1, 2), rope), _rotate(k.transpose(1, 2), rope)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        return self.o_proj(self._attend(q, k, v, mask)), (k, v)

    def forward_groups(
        self, x: torch.Tensor, groups: list[Rows], cache: SlotCache, layer: int
    ) -> torch.Tensor:
        """Attention of the packed tokens ``x`` [1, tokens] of ``groups`` (each: cache rows
        and its tokens' positions [batch, new], in order): the projections run once on all
        tokens; each group writes its keys and values into its cache rows at its positions
        and attends to its rows' keys up to its mask's width."""
        q_all, k_all, v_all = self.q_proj(x)[0], self.k_proj(x)[0], self.v_proj(x)[0]
        outs, at = [], 0
        for g in groups:
            b, s = g.positions.shape
            n = b * s
            q = q_all[at : at + n].view(b, s, self.heads, self.head_dim)
            k = k_all[at : at + n].view(b, s, self.kv_heads, self.head_dim)
            v = v_all[at : at + n].view(b, s, self.kv_heads, self.head_dim)
            at += n
            if self.qk_norm:
                q, k = self.q_norm(q), self.k_norm(k)
            q = _rotate(q.transpose(1, 2), g.rope)
            k = _rotate(k.transpose(1, 2), g.rope).transpose(1, 2)  # [batch, new, heads, dim]
            keys, values = cache.k[layer], cache.v[layer]
            row = cache.row_index(g.rows, b)[:, None].expand(b, s)
            keys[row, :, g.positions] = k
            values[row, :, g.positions] = v
            width = g.mask.shape[-1]
            out = self._attend(q, keys[g.rows, :, :width], values[g.rows, :, :width], g.mask)
            outs.append(out.reshape(n, -1))
        return self.o_proj(torch.cat(outs)[None])  # type: ignore[no-any-return]

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """[batch, new, heads x dim], before the output projection."""
        b, _, s, _ = q.shape
        out = functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, scale=self.head_dim**-0.5, enable_gqa=True
        )
        return out.transpose(1, 2).reshape(b, s, -1)


class MLP(nn.Module):
    def __init__(self, c: SimpleNamespace) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=c.mlp_bias)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=c.mlp_bias)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=c.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.down_proj(functional.silu(self.gate_proj(x)) * self.up_proj(x))
        return out


class Layer(nn.Module):
    def __init__(self, c: SimpleNamespace) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden_size, c.eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.eps)
        self.mlp = MLP(c)

    def forward(
        self, x: torch.Tensor, rope: Rope, mask: torch.Tensor, past: KV | None
    ) -> tuple[torch.Tensor, KV]:
        attended, kv = self.self_attn(self.input_layernorm(x), rope, mask, past)
        x = x + attended
        return x + self.mlp(self.post_attention_layernorm(x)), kv

    def forward_groups(
        self, x: torch.Tensor, groups: list[Rows], cache: SlotCache, layer: int
    ) -> torch.Tensor:
        x = x + self.self_attn.forward_groups(self.input_layernorm(x), groups, cache, layer)
        return x + self.mlp(self.post_attention_layernorm(x))  # type: ignore[no-any-return]


class Body(nn.Module):
    """``model.*`` in the checkpoint: embeddings, layers, final norm."""

    def __init__(self, c: SimpleNamespace) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList(Layer(c) for _ in range(c.layers))
        self.norm = RMSNorm(c.hidden_size, c.eps)


class Decoder(nn.Module):
    """A causal language model read from a Hugging Face checkpoint directory."""

    inv_freq: torch.Tensor  # rotary frequencies (a buffer: moves with the module)
    generation_config: SimpleNamespace  # eos_token_id, as transformers' model has it

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = SimpleNamespace(**config)  # as transformers' model.config reads
        c = _shape(config)
        self.shape = c
        self.model = Body(c)
        self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        steps = torch.arange(0, c.head_dim, 2, dtype=torch.int64, device="cpu") / c.head_dim
        inv_freq = 1.0 / (c.rope_theta ** steps.float())  # float32, as transformers has it
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    @classmethod
    def load(cls, directory: Path) -> Decoder:
        """The checkpoint in ``directory``, its weights memory-mapped (InputError if this
        module cannot run it)."""
        from safetensors.torch import load_file

        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        why = unsupported(config)
        if why is not None:
            raise InputError(f"checkpoint {directory}: the native decoder cannot run {why}")
        files = sorted(directory.glob("*.safetensors"))
        if not files:
            raise InputError(f"checkpoint {directory}: no *.safetensors weights")
        weights: dict[str, torch.Tensor] = {}
        for f in files:
            weights.update(load_file(f))  # mmap'd copy-on-write: pages shared until written
        with torch.device("meta"):
            decoder = cls(config)
        if decoder.shape.tied:
            weights.setdefault("lm_head.weight", weights["model.embed_tokens.weight"])
        try:
            decoder.load_state_dict(weights, strict=True, assign=True)
        except RuntimeError as exc:
            raise InputError(f"checkpoint {directory}: {str(exc).splitlines()[0]}") from None
        if decoder.shape.tied:
            decoder.lm_head.weight = decoder.model.embed_tokens.weight
        decoder.requires_grad_(False)
        decoder.generation_config = _generation_config(directory, config)
        return decoder.eval()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past_key_values: KVCache | None = None,
        use_cache: bool = True,
        logits_to_keep: int = 1,
    ) -> Output:
        """One pass over ``input_ids`` [batch, new] after ``past_key_values``;
        ``attention_mask`` [batch, past + new] (1 = a real token, left padding 0);
        logits of the last ``logits_to_keep`` positions (0: all, as in ``transformers``)."""
        x = self.model.embed_tokens(input_ids)
        rope = self._rope(position_ids, x.dtype)
        mask = _mask(attention_mask.bool(), input_ids.shape[1])
        cache: KVCache = []
        for i, layer in enumerate(self.model.layers):
            x, kv = layer(x, rope, mask, past_key_values[i] if past_key_values else None)
            cache.append(kv)
        kept = x if logits_to_keep == 0 else x[:, -logits_to_keep:, :]
        return Output(self.lm_head(self.model.norm(kept)), cache)

    def forward_rows(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        cache: SlotCache,
        rows: slice | torch.Tensor,
        last: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One pass over ``input_ids`` [batch, new] of the sequences in ``cache`` rows
        ``rows`` (``forward_groups`` with one group); logits [batch, vocab]."""
        return self.forward_groups([Rows(rows, input_ids, positions, last)], cache)[0]

    def forward_groups(self, groups: list[Rows], cache: SlotCache) -> list[torch.Tensor]:
        """One pass over several groups of cache rows (e.g. the running sequences' next
        tokens and a prefill chunk of new ones): each group's tokens go in at their
        absolute positions (``Rows.positions`` [batch, new]; earlier positions of a row
        must be in the cache already), all tokens through each layer's projections and
        MLP at once. Returns per group the logits [batch, vocab] of each row's token at
        index ``Rows.last`` (default: the last column). Positions past a row's real tokens
        (padding) may be written: they are overwritten before they are read."""
        hidden = self.model.embed_tokens.weight.shape[1]
        x = torch.cat([self.model.embed_tokens(g.ids).reshape(-1, hidden) for g in groups])[None]
        for g in groups:
            g.rope = self._rope(g.positions, x.dtype)
            width = int(g.positions.max()) + 1
            g.mask = (torch.arange(width)[None, None, :] <= g.positions[:, :, None])[:, None]
        layers: list[Layer] = list(self.model.layers)  # type: ignore[arg-type]
        for i, layer in enumerate(layers):
            x = layer.forward_groups(x, groups, cache, i)
        picks, at = [], 0
        for g in groups:
            b, s = g.positions.shape
            last = torch.full((b,), s - 1) if g.last is None else g.last
            picks.append(at + torch.arange(b) * s + last)
            at += b * s
        out = self.lm_head(self.model.norm(x[0, torch.cat(picks)]))
        return list(out.split([g.positions.shape[0] for g in groups]))

    def _rope(self, positions: torch.Tensor, dtype: torch.dtype) -> Rope:
        freqs = positions[:, :, None].float() * self.inv_freq[None, None, :]
        angles = torch.cat([freqs, freqs], dim=-1)
        return angles.cos().to(dtype)[:, None], angles.sin().to(dtype)[:, None]


@dataclass(eq=False)
class Rows:
    """A group of sequences in one pass over a :class:`SlotCache`: their rows (a slice:
    a view, no copy; an index tensor: those rows), tokens [batch, new] and positions
    [batch, new]; ``last``: the column whose logits are wanted per row."""

    rows: slice | torch.Tensor
    ids: torch.Tensor
    positions: torch.Tensor
    last: torch.Tensor | None = None
    rope: Rope = field(init=False)  # set by the pass
    mask: torch.Tensor = field(init=False)


class SlotCache:
    """Keys and values of sequences, one row each, rows reused as sequences come and go
    (continuous batching). Rows and positions per row grow on demand (``reserve``, by
    doubling), so memory follows the largest burst, not the context window."""

    def __init__(self, decoder: Decoder, rows: int = 1, capacity: int = 128) -> None:
        c = decoder.shape
        self.layers: int = c.layers
        self.heads: int = c.kv_heads
        self.head_dim: int = c.head_dim
        self.dtype = decoder.lm_head.weight.dtype
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []
        self.rows = self.capacity = 0
        self.reserve(rows, capacity)

    @property
    def bytes_per_position(self) -> int:
        """Bytes one position of one row takes (keys and values of every layer)."""
        bits = int(torch.finfo(self.dtype).bits)
        return 2 * self.layers * self.heads * self.head_dim * bits // 8

    @property
    def nbytes(self) -> int:
        return self.rows * self.capacity * self.bytes_per_position

    def reserve(self, rows: int, positions: int) -> None:
        """Room for ``rows`` rows of ``positions`` each (doubling, keeping what is held)."""
        if rows <= self.rows and positions <= self.capacity:
            return
        new_rows = self.rows if rows <= self.rows else max(rows, 2 * self.rows)
        new_cap = self.capacity if positions <= self.capacity else max(positions, 2 * self.capacity)
        shape = (new_rows, self.heads, new_cap, self.head_dim)
        for store in (self.k, self.v):
            for i in range(self.layers):
                fresh = torch.zeros(shape, dtype=self.dtype)
                if i < len(store):
                    fresh[: self.rows, :, : self.capacity] = store[i]
                    store[i] = fresh
                else:
                    store.append(fresh)
        self.rows, self.capacity = new_rows, new_cap

    def copy_row(self, src: int, dst: int, positions: int) -> None:
        """Row ``dst`` holds row ``src``'s first ``positions``."""
        for store in (self.k, self.v):
            for t in store:
                t[dst, :, :positions] = t[src, :, :positions]

    def swap_rows(self, a: int, b: int, positions: int) -> None:
        for store in (self.k, self.v):
            for t in store:
                held = t[a, :, :positions].clone()
                t[a, :, :positions] = t[b, :, :positions]
                t[b, :, :positions] = held

    def load_prefix(
        self, rows: list[int], keys: list[torch.Tensor], values: list[torch.Tensor]
    ) -> None:
        """``rows`` start with a cached prefix (per layer [kv heads, n, dim])."""
        n, index = keys[0].shape[1], torch.tensor(rows)
        for store, held in ((self.k, keys), (self.v, values)):
            for t, kv in zip(store, held, strict=True):
                t[index, :, :n] = kv

    def read_prefix(self, row: int, n: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return [t[row, :, :n].clone() for t in self.k], [t[row, :, :n].clone() for t in self.v]

    @staticmethod
    def row_index(rows: slice | torch.Tensor, batch: int) -> torch.Tensor:
        if isinstance(rows, slice):
            return torch.arange(rows.start or 0, (rows.start or 0) + batch)
        return rows


def _rotate(x: torch.Tensor, rope: Rope) -> torch.Tensor:
    cos, sin = rope
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def _mask(real: torch.Tensor, new: int) -> torch.Tensor:
    """[batch, 1, new, total] booleans: a query sees the real keys at or before it, and
    always itself (so a padding row attends somewhere and stays finite)."""
    total = real.shape[1]
    q = torch.arange(total - new, total)[:, None]
    k = torch.arange(total)[None, :]
    allowed = (k <= q)[None] & real[:, None, :]
    return (allowed | (k == q)[None])[:, None]


def _shape(config: dict[str, Any]) -> SimpleNamespace:
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    rope = config.get("rope_parameters") or {}
    kind = config["model_type"]
    return SimpleNamespace(
        hidden_size=hidden,
        intermediate_size=int(config["intermediate_size"]),
        vocab_size=int(config["vocab_size"]),
        layers=int(config["num_hidden_layers"]),
        heads=heads,
        kv_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=int(config.get("head_dim") or hidden // heads),
        eps=float(config.get("rms_norm_eps", 1e-6)),
        rope_theta=float(rope.get("rope_theta", config.get("rope_theta", 10000.0))),
        attention_bias=bool(config.get("attention_bias", kind == "qwen2")),  # Qwen2: q, k, v
        output_bias=kind != "qwen2" and bool(config.get("attention_bias", False)),
        mlp_bias=bool(config.get("mlp_bias", False)),
        qk_norm=kind == "qwen3",
        tied=bool(config.get("tie_word_embeddings", False)),
    )


def _generation_config(directory: Path, config: dict[str, Any]) -> SimpleNamespace:
    path = directory / "generation_config.json"
    generation = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return SimpleNamespace(eos_token_id=generation.get("eos_token_id", config.get("eos_token_id")))
