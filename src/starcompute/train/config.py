"""What a training run is: the method, the workers, the steps and the orbit it runs in."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from starcompute.errors import InputError

METHODS = ("diloco", "sync", "fedavg")
# bits per value of the outer update a worker sends (deltas of DiLoCo / FedAvg)
COMPRESSION_BITS = {"fp32": 32, "bf16": 16, "int8": 8, "int4": 4}
SYNC_GRADIENT_BITS = 32  # synchronous data-parallel all-reduces fp32 gradients every step
# outer optimiser per method: (learning rate, momentum, Nesterov) - DiLoCo (Douillard et
# al. 2023, arXiv:2311.08105): SGD Nesterov lr 0.7 momentum 0.9; FedAvg (McMahan et al.
# 2017): plain averaging of the workers' models = SGD lr 1, no momentum
OUTER = {"diloco": (0.7, 0.9, True), "fedavg": (1.0, 0.0, False)}


def _positive_int(name: str, value: int, hint: str = "") -> None:
    if not isinstance(value, int) or value <= 0:
        raise InputError(f"{name} must be a positive whole number, got {value!r}{hint}")


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """A training run; every field has a default that runs in about a minute on a CPU."""

    method: str = "diloco"
    workers: int = 4
    steps: int = 150  # inner (local) optimiser steps per worker
    inner_steps: int = 15  # H: local steps between outer synchronisations
    compress: str = "int8"  # outer-update precision: fp32 | bf16 | int8 | int4
    pretrain_steps: int = 150  # shared start: worker 0 alone, no communication
    lr: float = 3e-3  # inner AdamW peak learning rate (cosine to 0.1x)
    batch: int = 16  # sequences per worker per step
    window: int = 128  # bytes per sequence
    hidden: int = 64
    layers: int = 2
    shard_kib: int = 100
    corpus: str = "shakespeare"
    seed: int = 0
    eval_windows: int = 64
    step_s: float | None = None  # orbital seconds per inner step; None: performance model
    # the clock of a real model: each inner step takes the orbital seconds that this card's
    # model would take for timing_tokens tokens on the satellite's hardware (the tiny model
    # still computes the loss); None: the tiny model's own (microseconds)
    timing_card: str | None = None
    timing_tokens: int = 2**20
    straggler_wait_s: float | None = None  # None: half of inner_steps x step_s
    pause_in_eclipse: bool = True
    drops: tuple[tuple[int, int], ...] = field(default=())  # (worker, inner step) lost

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"method {self.method!r} is unknown: choose {', '.join(METHODS)}")
        if self.compress not in COMPRESSION_BITS:
            allowed = ", ".join(COMPRESSION_BITS)
            raise InputError(f"compression {self.compress!r} is unknown: choose {allowed}")
        _positive_int("workers", self.workers)
        _positive_int("steps", self.steps)
        _positive_int("inner steps", self.inner_steps, " (local steps between syncs, H >= 1)")
        for name in ("batch", "window", "hidden", "layers", "shard_kib", "eval_windows"):
            _positive_int(name, getattr(self, name))
        if self.hidden % 4:
            raise InputError(
                f"hidden must be a multiple of 4 (4 attention heads), got {self.hidden}"
            )
        if not isinstance(self.pretrain_steps, int) or self.pretrain_steps < 0:
            raise InputError(f"pretrain steps must be 0 or more, got {self.pretrain_steps!r}")
        if not 0.0 < self.lr <= 1.0:
            raise InputError(f"learning rate must be within (0, 1], got {self.lr}")
        if self.step_s is not None and not 0.0 < self.step_s <= 86400.0:
            raise InputError(f"step time must be within (0, 86400] s, got {self.step_s}")
        if self.timing_card is not None:
            if self.step_s is not None:
                raise InputError("give either a step time or a timing model, not both")
            from starcompute.compute.cards import load_card

            load_card(self.timing_card)  # InputError naming the cards there are
        _positive_int("timing tokens", self.timing_tokens)
        if self.straggler_wait_s is not None and self.straggler_wait_s < 0:
            raise InputError(f"straggler wait must be >= 0 s, got {self.straggler_wait_s}")
        for worker, step in self.drops:
            if not 0 <= worker < self.workers or not 0 <= step < self.steps:
                raise InputError(
                    f"drop {worker}@{step}: worker must be within 0..{self.workers - 1} "
                    f"and step within 0..{self.steps - 1}"
                )

    @property
    def outer_bits(self) -> int:
        return SYNC_GRADIENT_BITS if self.method == "sync" else COMPRESSION_BITS[self.compress]

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["drops"] = [list(d) for d in self.drops]
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise InputError(f"unknown training settings {unknown}: known are {sorted(known)}")
        values = dict(doc)
        values["drops"] = tuple((int(w), int(s)) for w, s in doc.get("drops", ()))
        return cls(**values)


def parse_drop(text: str) -> tuple[int, int]:
    """``K@STEP``: worker K's satellite is lost before its inner step STEP."""
    worker, sep, step = text.partition("@")
    try:
        if not sep:
            raise ValueError
        return int(worker), int(step)
    except ValueError:
        raise InputError(f"--drop {text!r}: expected WORKER@STEP, e.g. 2@40") from None
