"""A performance model of space hardware: the roofline, calibrated.

Prefill is compute-bound: 2 x (weights each token multiplies through) x prompt tokens
+ attention FLOPs, at the peak ops/s of the precision x a prefill efficiency. A decode
step is memory-bound: every weight touched is read once per step (all experts a batch
routes to, for MoE) plus the KV cache of every sequence, at the memory bandwidth x a
decode efficiency; the step takes the larger of that and its compute time (accelerators
overlap the two; a CPU running eagerly adds them: ``overlap``), plus a fixed per-pass
overhead (kernel launches, framework). The efficiencies and the overhead are per profile;
``bench/calibrate_perf.py`` fits them for this machine's CPU on some configurations and
checks the predictions on held-out ones against the real engine.

Energy is the accelerator's peak power over the busy time (an upper bound).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from starcompute.compute.cards import ModelCard, bytes_per_param
from starcompute.compute.engine import (
    Completion,
    EngineBase,
    GenerationRequest,
    TokenCallback,
    prompt_token_count,
)
from starcompute.errors import InputError
from starcompute.spacecraft.hardware import HardwareProfile
from starcompute.times import FloatArray

OPS_FOR_QUANT = {
    "fp32": ("fp32", "fp16", "bf16"),
    "fp16": ("fp16", "bf16"),
    "bf16": ("bf16", "fp16"),
    "fp8": ("fp8", "int8", "fp16"),
    "int8": ("int8", "fp8", "fp16"),
    "int4": ("int4", "int8", "fp16"),
}
KV_BYTES = 2.0  # the KV cache is kept in fp16/bf16


@dataclass(frozen=True, slots=True)
class ComputeTarget:
    """What the roofline needs of a machine."""

    name: str
    peak_ops_per_s: dict[str, float]
    memory_bandwidth_gb_s: float
    memory_gb: float
    prefill_efficiency: float
    decode_efficiency: float
    step_overhead_s: float = 0.0
    power_w: float = 0.0
    overlap: bool = True  # compute and memory traffic overlap (accelerators); CPUs: add them
    kv_traffic: float = 1.0  # KV-cache bytes moved per byte read (eager attention copies it)

    def __post_init__(self) -> None:
        for name in ("prefill_efficiency", "decode_efficiency"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise InputError(f"{self.name}: {name} must be in (0, 1], got {value}")
        if self.memory_bandwidth_gb_s <= 0 or not self.peak_ops_per_s:
            raise InputError(f"{self.name}: needs peak ops/s and memory bandwidth")

    @classmethod
    def from_profile(cls, hw: HardwareProfile) -> ComputeTarget:
        c = hw.compute
        return cls(
            hw.name,
            dict(c.peak_ops_per_s),
            c.memory_bandwidth_gb_s,
            c.memory_gb,
            c.prefill_efficiency,
            c.decode_efficiency,
            c.step_overhead_s,
            hw.power.accelerator_peak_w,
        )

    def ops_per_s(self, quant: str) -> float:
        for precision in OPS_FOR_QUANT.get(quant, (quant,)):
            if precision in self.peak_ops_per_s:
                return self.peak_ops_per_s[precision]
        raise InputError(
            f"{self.name} lists no peak ops/s usable for {quant} "
            f"(has {sorted(self.peak_ops_per_s)})"
        )


@dataclass(frozen=True, slots=True)
class Estimate:
    prefill_s: float
    decode_s: float
    decode_step_s: float  # at the mean context of the run
    tokens_per_s: float  # generated tokens of the whole batch / decode time
    energy_j: float
    memory_need_gb: float
    fits: bool

    @property
    def total_s(self) -> float:
        return self.prefill_s + self.decode_s


@dataclass(frozen=True, slots=True)
class PerformanceModel:
    card: ModelCard
    target: ComputeTarget
    quant: str = "fp16"

    def prefill_s(self, prompt_tokens: int, batch: int = 1) -> float:
        return float(self.prefill_s_array(np.asarray(prompt_tokens, dtype=np.float64), batch))

    def decode_step_s(self, context_tokens: float, batch: int = 1) -> float:
        return float(self.decode_step_s_array(np.asarray(context_tokens, dtype=np.float64), batch))

    def prefill_s_array(self, prompt_tokens: FloatArray, batch: int = 1) -> FloatArray:
        """Prefill time of each prompt length (the whole batch prefills together)."""
        c, t = self.card, self.target
        flops = batch * (
            2.0 * c.matmul_params_per_token() * prompt_tokens
            + c.attention_flops(1, 1.0) * prompt_tokens * prompt_tokens / 2.0
        )
        compute = flops / (t.ops_per_s(self.quant) * t.prefill_efficiency)
        memory = self._weights_read_bytes(batch * prompt_tokens) / self._bandwidth()
        return self._combine(compute, memory)

    def decode_step_s_array(self, context_tokens: FloatArray, batch: int = 1) -> FloatArray:
        """One decode step of the batch at each mean context length."""
        c, t = self.card, self.target
        kv_bytes = t.kv_traffic * batch * context_tokens * c.kv_bytes_per_token(KV_BYTES)
        bytes_read = self._weights_read_bytes(np.full_like(context_tokens, batch)) + kv_bytes
        flops = batch * (
            2.0 * c.matmul_params_per_token() + c.attention_flops(1, 1.0) * context_tokens
        )
        memory = bytes_read / self._bandwidth()
        compute = flops / (t.ops_per_s(self.quant) * t.prefill_efficiency)
        return self._combine(compute, memory)

    def total_s_array(
        self, prompt_tokens: FloatArray, output_tokens: FloatArray, batch: int = 1
    ) -> FloatArray:
        """Prefill + decode of each (prompt, output) pair: what ``estimate`` totals."""
        prefill = self.prefill_s_array(prompt_tokens, batch)
        step = self.decode_step_s_array(prompt_tokens + output_tokens / 2.0, batch)
        return np.asarray(prefill + step * np.maximum(output_tokens - 1.0, 0.0))

    def _combine(self, compute_s: FloatArray, memory_s: FloatArray) -> FloatArray:
        t = self.target
        busy = np.maximum(compute_s, memory_s) if t.overlap else compute_s + memory_s
        return np.asarray(busy + t.step_overhead_s)

    def estimate(self, prompt_tokens: int, output_tokens: int, batch: int = 1) -> Estimate:
        for name, value in (
            ("prompt tokens", prompt_tokens),
            ("output tokens", output_tokens),
            ("batch", batch),
        ):
            if value < 1:
                raise InputError(f"{name} must be >= 1, got {value}")
        prefill = self.prefill_s(prompt_tokens, batch)
        mean_context = prompt_tokens + output_tokens / 2.0
        step = self.decode_step_s(mean_context, batch)
        decode = step * max(output_tokens - 1, 0)
        need = self.memory_need_gb(prompt_tokens + output_tokens, batch)
        return Estimate(
            prefill,
            decode,
            step,
            batch * output_tokens / max(decode + step, 1e-12),
            self.target.power_w * (prefill + decode),
            need,
            need <= self.target.memory_gb,
        )

    def memory_need_gb(self, context_tokens: int, batch: int = 1) -> float:
        weights = self.card.weight_bytes(self.quant)
        kv = batch * context_tokens * self.card.kv_bytes_per_token(KV_BYTES)
        return 1.1 * (weights + kv) / 1e9  # +10 % activations and runtime buffers (assumed)

    def _bandwidth(self) -> float:
        return self.target.memory_bandwidth_gb_s * 1e9 * self.target.decode_efficiency

    def _weights_read_bytes(self, tokens: FloatArray) -> FloatArray:
        """Bytes of weights a step with ``tokens`` tokens must read (MoE: experts hit)."""
        c = self.card
        per_param = bytes_per_param(self.quant)
        if not c.is_moe:
            return np.full_like(tokens, c.params_total() * per_param, dtype=np.float64)
        hit = c.experts * (1.0 - (1.0 - c.experts_per_token / c.experts) ** tokens)
        dense = c.params_total() - c.layers * c.mlp_params()
        router = c.hidden * c.experts
        experts_hit = np.ceil(hit) * 3 * c.hidden * c.intermediate + router
        return np.asarray((dense + c.layers * experts_hit) * per_param)


class SimulatedEngine(EngineBase):
    """An Engine whose completions carry predicted times, token counts and no text: it
    stands in for a model on hardware we do not have (a satellite in a simulation)."""

    def __init__(self, model: PerformanceModel, max_batch: int = 16) -> None:
        self.model = model
        self.name = f"simulated:{model.card.name}@{model.target.name}"
        self.context_window = model.card.context
        self.max_batch = max_batch

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        on_token: TokenCallback | None = None,
        prompt_tokens: Sequence[int] | None = None,
    ) -> list[Completion]:
        """``prompt_tokens`` per request (default: 1.3 tokens per word of the prompt)."""
        counts = (
            list(prompt_tokens)
            if prompt_tokens is not None
            else [prompt_token_count(r) for r in requests]
        )
        out: list[Completion] = []
        for b in range(0, len(requests), self.max_batch):
            batch = list(range(b, min(b + self.max_batch, len(requests))))
            width = max(counts[i] for i in batch)
            ttft = self.model.prefill_s(width, len(batch))
            for i in batch:
                r = requests[i]
                if counts[i] + r.max_tokens > self.context_window:
                    raise InputError(
                        f"prompt of {counts[i]} tokens + max tokens {r.max_tokens} "
                        f"exceeds the context window of {self.context_window}"
                    )
                step = self.model.decode_step_s(width + r.max_tokens / 2.0, len(batch))
                out.append(
                    Completion(
                        "",
                        counts[i],
                        r.max_tokens,
                        "length",
                        ttft,
                        ttft + step * (r.max_tokens - 1),
                    )
                )
        return out
