"""Models larger than one satellite: a pipeline split across k satellites over laser ISLs.

Each satellite holds a contiguous run of layers that fits its memory (weights + KV cache
for the context + 10 %); the first holds the embeddings, the last the output head. A
token's activations (hidden x 2 bytes per token) cross k-1 laser hops, each costing
bytes x 8 / rate + range / c + processing. Decode latency per token is the sum of the
stages and hops; with k micro-batches in flight the pipeline's throughput is set by its
slowest stage or hop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from starcompute.compute.cards import bytes_per_param
from starcompute.compute.perf import KV_BYTES, PerformanceModel
from starcompute.errors import InputError
from starcompute.orbits.constants import SPEED_OF_LIGHT_KM_S

ACTIVATION_BYTES = 2.0  # fp16 activations


@dataclass(frozen=True, slots=True)
class SplitPlan:
    satellites: int
    layers_per_satellite: list[int]
    hop_s: float  # one laser hop for one token's activations (decode)
    prefill_s: float
    decode_token_s: float  # latency of one generated token through the whole pipeline
    throughput_tokens_per_s: float  # with as many micro-batches as stages
    single_fits: bool
    single_decode_token_s: float | None


def layers_per_satellite(model: PerformanceModel, context_tokens: int) -> int:
    c = model.card
    per_layer = (
        c.params_per_layer() * bytes_per_param(model.quant)
        + context_tokens * 2 * c.kv_heads * c.head_dim * KV_BYTES
    )
    fixed = c.embedding_params() * bytes_per_param(model.quant)
    usable = model.target.memory_gb * 1e9 / 1.1 - fixed
    return max(0, int(usable // per_layer))


def plan_split(
    model: PerformanceModel,
    prompt_tokens: int,
    output_tokens: int,
    isl_rate_bps: float = 100e9,
    hop_range_km: float = 1000.0,
    processing_s: float = 1e-4,
) -> SplitPlan:
    c = model.card
    context = prompt_tokens + output_tokens
    per_sat = layers_per_satellite(model, context)
    if per_sat < 1:
        raise InputError(
            f"{c.name} ({model.quant}) does not fit even one layer per "
            f"{model.target.name} satellite"
        )
    k = math.ceil(c.layers / per_sat)
    layers = [min(per_sat, c.layers - i * per_sat) for i in range(k)]
    hop = (
        c.hidden * ACTIVATION_BYTES * 8.0 / isl_rate_bps
        + hop_range_km / SPEED_OF_LIGHT_KM_S
        + processing_s
    )
    whole_step = model.decode_step_s(prompt_tokens + output_tokens / 2.0)
    overhead = model.target.step_overhead_s
    stage = [(whole_step - overhead) * n / c.layers + overhead for n in layers]
    prefill_hop = prompt_tokens * c.hidden * ACTIVATION_BYTES * 8.0 / isl_rate_bps + hop
    prefill = model.prefill_s(prompt_tokens) + (k - 1) * prefill_hop
    decode_token = sum(stage) + (k - 1) * hop
    single_fits = model.memory_need_gb(context) <= model.target.memory_gb
    return SplitPlan(
        k,
        layers,
        hop,
        prefill,
        decode_token,
        1.0 / max(max(stage), hop if k > 1 else 0.0),
        single_fits,
        whole_step if single_fits else None,
    )
