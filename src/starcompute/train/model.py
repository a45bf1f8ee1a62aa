"""The model every worker trains: a byte-level decoder of the Qwen3 architecture
(``transformers``' Qwen3ForCausalLM, vocabulary = the 256 byte values), built from a seed
with no download, plus its batches, loss and held-out evaluation."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.nn import functional
from transformers import Qwen3Config, Qwen3ForCausalLM
from transformers.utils import logging as hf_logging

from starcompute.compute.checkpoints import offline
from starcompute.train.config import TrainConfig

Batch = tuple[torch.Tensor, torch.Tensor]
EVAL_SEED = 1234
PRETRAIN_STREAM = 900  # data stream of the shared pretraining (worker 0's shard)
WARMUP_STEPS = 20  # linear learning-rate warm-up when starting from scratch


def build_model(cfg: TrainConfig) -> Qwen3ForCausalLM:
    offline()
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    torch.manual_seed(cfg.seed)
    config = Qwen3Config(
        vocab_size=256,
        hidden_size=cfg.hidden,
        intermediate_size=4 * cfg.hidden,
        num_hidden_layers=cfg.layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=cfg.hidden // 4,
        max_position_embeddings=cfg.window,
        tie_word_embeddings=True,
        use_cache=False,
    )
    return Qwen3ForCausalLM(config)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def as_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).long()


def stream(cfg: TrainConfig, shard: torch.Tensor, generator: torch.Generator) -> Iterator[Batch]:
    """Random windows of a worker's shard, forever (the generator's state is the position)."""
    while True:
        ix = torch.randint(0, len(shard) - cfg.window - 1, (cfg.batch,), generator=generator)
        x = torch.stack([shard[i : i + cfg.window] for i in ix])
        y = torch.stack([shard[i + 1 : i + cfg.window + 1] for i in ix])
        yield x, y


def generator_for(cfg: TrainConfig, stream_id: int) -> torch.Generator:
    """The same data stream for a worker whatever the method (a fair comparison)."""
    return torch.Generator().manual_seed(100 + stream_id + 1000 * cfg.seed)


def loss_of(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=x).logits
    return functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))


def eval_batch(cfg: TrainConfig, held_out: bytes) -> Batch:
    """Fixed windows of the held-out text (next-byte cross-entropy in nats)."""
    data = as_tensor(held_out)
    g = torch.Generator().manual_seed(EVAL_SEED)
    ix = torch.randint(0, len(data) - cfg.window - 1, (cfg.eval_windows,), generator=g)
    x = torch.stack([data[i : i + cfg.window] for i in ix])
    y = torch.stack([data[i + 1 : i + cfg.window + 1] for i in ix])
    return x, y


@torch.no_grad()
def evaluate(model: torch.nn.Module, batch: Batch) -> float:
    was_training = model.training
    model.eval()
    loss = float(loss_of(model, *batch).item())
    model.train(was_training)
    return loss


def lr_at(cfg: TrainConfig, step: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from ``lr`` to 0.1 x ``lr``."""
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, cfg.steps - warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))


def adamw(model: torch.nn.Module, lr: float) -> torch.optim.AdamW:
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.95))


def train_step(
    model: torch.nn.Module, opt: torch.optim.Optimizer, batch: Batch, lr: float
) -> float:
    for group in opt.param_groups:
        group["lr"] = lr
    loss = loss_of(model, *batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    opt.step()
    return float(loss.item())


def quantise(delta: torch.Tensor, bits: int) -> torch.Tensor:
    """What a worker sends: ``delta`` at ``bits`` per value (per-tensor absmax scale for
    integers), as the receiver decodes it."""
    if bits == 32:
        return delta
    if bits == 16:
        return delta.to(torch.bfloat16).float()
    levels = 2 ** (bits - 1) - 1
    scale = delta.abs().max().clamp_min(1e-12) / levels
    decoded: torch.Tensor = torch.round(delta / scale).clamp(-levels, levels) * scale
    return decoded


def pretrain(cfg: TrainConfig, shard: bytes) -> Qwen3ForCausalLM:
    """The shared start: worker 0 alone on its shard for ``pretrain_steps`` (constant
    learning rate after a warm-up), with no communication."""
    model = build_model(cfg)
    if cfg.pretrain_steps == 0:
        return model
    opt = adamw(model, cfg.lr)
    batches = stream(cfg, as_tensor(shard), generator_for(cfg, PRETRAIN_STREAM))
    for step in range(cfg.pretrain_steps):
        train_step(model, opt, next(batches), cfg.lr * min(1.0, (step + 1) / WARMUP_STEPS))
    return model
