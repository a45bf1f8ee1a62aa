"""How long training a model takes on the constellation's training satellites, and how
many bytes cross the laser links, with DiLoCo versus synchronous data-parallel.

The model (stated, every number in the output):
- compute per step per satellite = 6 x (matmul parameters) x tokens / (bf16 peak x MFU),
  MFU = the hardware profile's prefill efficiency (Kaplan et al. 2020, 6N FLOPs/token);
- synchronous DP all-reduces bf16 gradients every step, DiLoCo its outer deltas every H
  steps (``compress`` bits per value); an all-reduce on the +grid runs as a 2-D ring (in
  each plane, then across planes): every satellite sends and receives ~2 x the payload,
  and the latency is 2 (n - 1) hops per ring at the mean laser-link light time;
- a sync-DP step waits while the contact plan leaves the satellites disconnected
  (it runs only in the connected fraction of time); DiLoCo trains on;
- satellites compute only while the power model lets them (sunlit and cool): a paused
  satellite sits steps out (sync DP, elastic) or falls behind (DiLoCo), so compute time
  is divided by the mean computing fraction over the day;
- memory: 16 B/parameter for mixed-precision AdamW (+8 B for DiLoCo's outer copy and
  momentum); activations are not counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from starcompute.compute.cards import ModelCard
from starcompute.compute.perf import ComputeTarget
from starcompute.errors import InputError
from starcompute.mission.health import profile
from starcompute.orbits.constants import SPEED_OF_LIGHT_KM_S
from starcompute.train.orbit import Orbit

ADAMW_BYTES_PER_PARAM = 16.0  # bf16 weights + grads, fp32 master, m and v
OUTER_BYTES_PER_PARAM = 8.0  # DiLoCo: fp32 global copy + outer momentum
SYNC_GRADIENT_BYTES = 2.0  # bf16 gradients
DAY_S = 86400.0


def training_flops(matmul_params: float, tokens: float) -> float:
    return 6.0 * matmul_params * tokens


def step_seconds(matmul_params: float, tokens: float, hardware: str) -> float:
    """One optimiser step of ``tokens`` tokens on one satellite, by the roofline's
    compute side at the profile's prefill efficiency (MFU)."""
    hw = ComputeTarget.from_profile(profile(hardware))
    return training_flops(matmul_params, tokens) / (hw.ops_per_s("bf16") * hw.prefill_efficiency)


@dataclass(frozen=True, slots=True)
class Network:
    """What the estimate needs of the training satellites' orbit over a day."""

    satellites: int
    ring_sizes: tuple[int, int]  # in-plane ring, across planes
    hop_light_s: tuple[float, float]
    rate_bps: float
    connected_fraction: float
    compute_fraction: float  # sunlit and cool (mean over satellites and time)

    @classmethod
    def measure(cls, orbit: Orbit, sample_s: float = 60.0) -> Network:
        n = len(orbit.workers)
        times = np.arange(0.0, orbit.horizon_s, sample_s)
        members = list(range(n))
        connected = float(np.mean([orbit.connected(float(t), members) for t in times]))
        sats = orbit.workers
        can = [
            [orbit.health.can_run(s, float(t), orbit.pause_in_eclipse) for t in times] for s in sats
        ]
        w = orbit.windows
        plane = orbit.const.plane
        same = plane[w.a] == plane[w.b]
        light = w.max_range_km / SPEED_OF_LIGHT_KM_S
        in_plane = float(np.mean(light[same])) if same.any() else 0.0
        across = float(np.mean(light[~same])) if (~same).any() else in_plane
        per_plane = max(1, int(np.bincount(plane[sats][plane[sats] >= 0]).max(initial=1)))
        rings = (min(per_plane, n), math.ceil(n / min(per_plane, n)))
        rate = float(np.median(w.rate_bps)) if len(w) else orbit.isl.rate_bps
        return cls(n, rings, (in_plane, across), rate, connected, float(np.mean(can)))

    def allreduce_s(self, payload_bytes: float) -> float:
        """2-D ring all-reduce: bandwidth ~2 x payload, latency 2 (n - 1) hops per ring."""
        n1, n2 = self.ring_sizes
        volume = 2.0 * (n1 - 1) / n1 * payload_bytes + 2.0 * (n2 - 1) / n2 * payload_bytes / n1
        latency = 2 * (n1 - 1) * self.hop_light_s[0] + 2 * (n2 - 1) * self.hop_light_s[1]
        return volume * 8.0 / self.rate_bps + latency


def estimate(
    card: ModelCard,
    tokens: float,
    net: Network,
    hardware: str,
    batch_tokens: int,
    inner_steps: int,
    compress_bits: int,
) -> dict[str, Any]:
    """Wall-clock time and laser-link traffic of both methods (a dict for --json)."""
    if not tokens > 0:
        raise InputError(f"tokens must be positive, got {tokens}")
    if batch_tokens <= 0 or inner_steps <= 0:
        raise InputError("batch tokens and inner steps must be positive whole numbers")
    params = float(card.params_total())
    steps = math.ceil(tokens / (batch_tokens * net.satellites))
    compute_s = step_seconds(card.matmul_params_per_token(), batch_tokens, hardware)
    # a paused satellite sits out (sync DP, elastic) or falls behind (DiLoCo): either way
    # each satellite needs steps / (computing fraction) steps of wall time
    wall_steps = steps / max(net.compute_fraction, 1e-9)
    memory_gb = profile(hardware).compute.memory_gb
    methods = {}
    for name, bytes_per_value, every, extra in (
        ("sync", SYNC_GRADIENT_BYTES, 1, 0.0),
        ("diloco", compress_bits / 8.0, inner_steps, OUTER_BYTES_PER_PARAM),
    ):
        syncs = math.ceil(wall_steps) if name == "sync" else math.ceil(steps / every)
        sends = math.ceil(steps / every)
        payload = params * bytes_per_value
        comm_total_s = syncs * net.allreduce_s(payload)
        wall_s = wall_steps * compute_s + comm_total_s
        if name == "sync":  # every step waits for the links to join the satellites
            wall_s /= max(net.connected_fraction, 1e-9)
        need_gb = params * (ADAMW_BYTES_PER_PARAM + extra) / 1e9
        methods[name] = {
            "syncs": syncs,
            "payload_bytes": payload,
            # a satellite takes part in the all-reduces of the steps it computes
            "bytes_per_satellite": sends * 2.0 * payload,
            "bytes_total": sends * 2.0 * payload * net.satellites,
            "comm_s": comm_total_s,
            "wall_s": wall_s,
            "wall_days": wall_s / DAY_S,
            "memory_need_gb": need_gb,
            "fits_memory": need_gb <= memory_gb,
        }
    s, d = methods["sync"], methods["diloco"]
    return {
        "model": card.name,
        "params": int(params),
        "tokens": tokens,
        "satellites": net.satellites,
        "hardware": hardware,
        "batch_tokens_per_satellite": batch_tokens,
        "steps": steps,
        "inner_steps": inner_steps,
        "compute_s_per_step": compute_s,
        "compute_fraction": net.compute_fraction,
        "connected_fraction": net.connected_fraction,
        "allreduce_rings": list(net.ring_sizes),
        "hop_light_ms": [1e3 * x for x in net.hop_light_s],
        "isl_rate_bps": net.rate_bps,
        "memory_gb": memory_gb,
        "sync": s,
        "diloco": d,
        "speedup": s["wall_s"] / d["wall_s"],
        "bytes_ratio": s["bytes_total"] / d["bytes_total"],
    }
