"""Calibrate the roofline performance model on this machine's CPU against the real engine.

One command: ``.venv/bin/python bench/calibrate_perf.py [--json]``.

1. Microbenchmarks give the machine's roofline: fp32 matmul ops/s (torch) and memory
   bandwidth (a 256 MB tensor copy).
2. The real engine (SmolLM2-135M, fp32) is timed on prefill (time to first token) and
   decode (seconds per step at a fixed batch, EOS ignored) in several configurations.
3. The model's four free numbers (prefill efficiency, decode efficiency, per-pass
   overhead, KV-cache traffic multiplier: eager CPU attention copies the cache and
   expands the grouped KV heads every step) are fitted on a *calibration* subset; the
   error is reported on the other, *held-out* configurations (target: within 25 %).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch
from scipy.optimize import least_squares

from starcompute.compute.cards import load_card
from starcompute.compute.engine import GenerationRequest
from starcompute.compute.perf import ComputeTarget, PerformanceModel
from starcompute.compute.real import TransformersEngine

CALIBRATE = [
    ("prefill", 64, 1),
    ("prefill", 256, 1),
    ("prefill", 64, 2),
    ("decode", 64, 1),
    ("decode", 64, 4),
    ("decode", 256, 2),
    ("decode", 256, 4),
]
HOLD_OUT = [
    ("prefill", 32, 1),
    ("prefill", 512, 1),
    ("prefill", 128, 4),
    ("decode", 256, 1),
    ("decode", 64, 16),
    ("decode", 512, 8),
]
DECODE_STEPS = 24


def roofline() -> tuple[float, float]:
    """(fp32 matmul ops/s, memory bandwidth GB/s) of this machine."""
    a = torch.randn(1024, 1024)
    torch.matmul(a, a)
    t0 = time.perf_counter()
    for _ in range(20):
        torch.matmul(a, a)
    flops = 20 * 2 * 1024**3 / (time.perf_counter() - t0)
    src = torch.empty(64 * 2**20)  # 256 MB of fp32
    dst = torch.empty_like(src)
    dst.copy_(src)
    t0 = time.perf_counter()
    for _ in range(5):
        dst.copy_(src)
    bandwidth = 5 * 2 * src.numel() * 4 / (time.perf_counter() - t0) / 1e9  # read + write
    return flops, bandwidth


def measure(engine: TransformersEngine, kind: str, tokens: int, batch: int) -> float:
    """Median of 3: prefill seconds (TTFT) or seconds per decode step at ~tokens context."""
    words = " ".join(["orbit"] * tokens)
    prompt_ids = engine.tokenizer(words)["input_ids"][:tokens]
    prompt = engine.tokenizer.decode(prompt_ids)
    steps = 1 if kind == "prefill" else DECODE_STEPS
    reqs = [GenerationRequest(prompt=prompt, max_tokens=steps, ignore_eos=True)] * batch
    runs = []
    for _ in range(3):
        done = engine.generate(reqs)[0]
        runs.append(
            done.time_to_first_token_s
            if kind == "prefill"
            else (done.total_s - done.time_to_first_token_s) / (steps - 1)
        )
    return float(np.median(runs))


def predict(model: PerformanceModel, kind: str, tokens: int, batch: int) -> float:
    if kind == "prefill":
        return model.prefill_s(tokens, batch)
    return model.decode_step_s(tokens + DECODE_STEPS / 2, batch)


def calibrate(engine: TransformersEngine) -> dict[str, Any]:
    flops, bandwidth = roofline()
    card = load_card("smollm2-135m")
    measured = {cfg: measure(engine, *cfg) for cfg in CALIBRATE + HOLD_OUT}

    def model_for(x: np.ndarray) -> PerformanceModel:
        target = ComputeTarget(
            "cpu-local",
            {"fp32": flops},
            bandwidth,
            24.0,
            float(x[0]),
            float(x[1]),
            float(x[2]),
            overlap=False,
            kv_traffic=float(x[3]),
        )
        return PerformanceModel(card, target, "fp32")

    def residuals(x: np.ndarray) -> np.ndarray:
        m = model_for(x)
        return np.array([np.log(predict(m, *c) / measured[c]) for c in CALIBRATE])

    fit = least_squares(
        residuals,
        x0=[0.5, 0.5, 1e-3, 1.0],
        bounds=([1e-3, 1e-3, 0.0, 1.0], [1, 1, 0.1, 50.0]),
    )
    model = model_for(fit.x)

    def rows(cfgs: list[tuple[str, int, int]]) -> list[dict[str, Any]]:
        return [
            {
                "phase": k,
                "tokens": n,
                "batch": b,
                "measured_s": round(measured[(k, n, b)], 5),
                "predicted_s": round(predict(model, k, n, b), 5),
                "error_pct": round(100 * (predict(model, k, n, b) / measured[(k, n, b)] - 1), 1),
            }
            for k, n, b in cfgs
        ]

    held = rows(HOLD_OUT)
    return {
        "matmul_fp32_gflops": round(flops / 1e9, 1),
        "copy_bandwidth_gb_s": round(bandwidth, 1),
        "fitted": {
            "prefill_efficiency": round(float(fit.x[0]), 4),
            "decode_efficiency": round(float(fit.x[1]), 4),
            "step_overhead_s": round(float(fit.x[2]), 6),
            "kv_traffic": round(float(fit.x[3]), 3),
        },
        "calibration": rows(CALIBRATE),
        "held_out": held,
        "held_out_max_abs_error_pct": max(abs(r["error_pct"]) for r in held),
        "target": "held-out predictions within 25 % of measured",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    result = calibrate(TransformersEngine())
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(
        f"roofline: {result['matmul_fp32_gflops']} GFLOP/s fp32, "
        f"{result['copy_bandwidth_gb_s']} GB/s; fitted {result['fitted']}"
    )
    for part in ("calibration", "held_out"):
        print(part)
        for r in result[part]:
            print(
                f"  {r['phase']:<8}{r['tokens']:>5} tok  batch {r['batch']:>2}  measured "
                f"{r['measured_s'] * 1e3:9.2f} ms  predicted {r['predicted_s'] * 1e3:9.2f} ms"
                f"  {r['error_pct']:+6.1f} %"
            )
    print(f"held-out max |error| {result['held_out_max_abs_error_pct']} % (target 25 %)")


if __name__ == "__main__":
    main()
