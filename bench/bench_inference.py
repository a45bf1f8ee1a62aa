"""Benchmark: the real engine with the default model (SmolLM2-135M-Instruct) on this machine.

One command: ``.venv/bin/python bench/bench_inference.py [--json] [--skip-calibration]``.
Prints load time cold (GGUF dequantisation, in a fresh cache) and warm; aggregate
tokens/s and the slowest time to first token with 1, 4 and 16 concurrent requests, for
the static batch (``engine.generate``) and the continuous batcher (``engine.scheduler``)
in the same run; the overhead of the serving path (continuous batcher, one request)
over a bare ``transformers`` ``model.generate`` on the same checkpoint producing the same
tokens (target <= 5 %); and the performance model's calibration error.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch

from starcompute.compute.engine import Completion, GenerationRequest, Message, Scheduler
from starcompute.compute.real import TransformersEngine

TOKENS = 64
QUESTION = "Explain in a few sentences why satellites need radiators."


def _load_in_new_process(cache: str) -> float:
    """Engine load time in a fresh interpreter (what a user starting the CLI waits for)."""
    code = "from starcompute.compute.real import TransformersEngine as E; print(E().load_s)"
    env = {**os.environ, "STARCOMPUTE_CACHE": cache}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def _load_times() -> tuple[float, float]:
    """(cold: GGUF dequantisation into an empty cache, warm: from the cached conversion)."""
    with tempfile.TemporaryDirectory() as cache:
        return _load_in_new_process(cache), _load_in_new_process(cache)


def _request() -> GenerationRequest:
    return GenerationRequest(
        messages=(Message("user", QUESTION),), max_tokens=TOKENS, ignore_eos=True
    )


def _static(engine: TransformersEngine, n: int) -> list[Completion]:
    return engine.generate([_request()] * n)


def _continuous(scheduler: Scheduler, n: int) -> list[Completion]:
    return [f.result() for f in [scheduler.submit(_request()) for _ in range(n)]]


def _throughput(run: Callable[[int], list[Completion]], concurrent: int) -> dict[str, float]:
    run(concurrent)  # warm-up
    t0 = time.perf_counter()
    done = run(concurrent)
    wall = time.perf_counter() - t0
    tokens = sum(c.completion_tokens for c in done)
    return {
        "concurrent": concurrent,
        "aggregate_tokens_per_s": round(tokens / wall, 1),
        "time_to_first_token_s": round(max(c.time_to_first_token_s for c in done), 4),
    }


def _overhead(
    engine: TransformersEngine, scheduler: Scheduler, repeats: int = 5
) -> dict[str, float]:
    """Same prompt, same 64 greedy tokens: the serving path (continuous batcher, one
    request) vs a bare ``transformers`` ``model.generate`` on the same checkpoint."""
    from transformers import AutoModelForCausalLM

    reference = AutoModelForCausalLM.from_pretrained(engine.path, dtype="auto").eval()
    ids = torch.tensor([engine.encode(_request())])
    kwargs: dict[str, Any] = {
        "max_new_tokens": TOKENS,
        "min_new_tokens": TOKENS,
        "do_sample": False,
        "pad_token_id": engine.pad_id,
    }

    def bare() -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            reference.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
        return time.perf_counter() - t0

    def served() -> float:
        t0 = time.perf_counter()
        _continuous(scheduler, 1)
        return time.perf_counter() - t0

    bare(), served()  # warm-up both paths
    b = sorted(bare() for _ in range(repeats))[repeats // 2]
    s = sorted(served() for _ in range(repeats))[repeats // 2]
    return {
        "bare_generate_s": round(b, 4),
        "serving_path_s": round(s, 4),
        "overhead_pct": round(100 * (s / b - 1), 1),
    }


def run(calibration: bool) -> dict[str, Any]:
    cold, warm = _load_times()
    engine = TransformersEngine()
    scheduler = engine.scheduler(64)  # continuous batching (compute.continuous)
    try:
        static = [_throughput(lambda n: _static(engine, n), n) for n in (1, 4, 16)]
        continuous = [_throughput(lambda n: _continuous(scheduler, n), n) for n in (1, 4, 16)]
        overhead = _overhead(engine, scheduler)
    finally:
        scheduler.close()
    ratio = continuous[-1]["aggregate_tokens_per_s"] / static[-1]["aggregate_tokens_per_s"]
    out: dict[str, Any] = {
        "model": "SmolLM2-135M-Instruct (GGUF Q4_1 dequantised to fp32)",
        "threads": torch.get_num_threads(),
        "load_cold_s": round(cold, 2),
        "load_warm_s": round(warm, 2),
        "throughput_static": static,
        "throughput_continuous": continuous,
        "continuous_over_static_at_16": round(ratio, 3),
        "serving_overhead": overhead,
        "targets": "warm load <= 3 s; continuous >= 1.0x static at 16; serving overhead <= 5 %",
    }
    out["single_stream_tokens_per_s"] = continuous[0]["aggregate_tokens_per_s"]
    if calibration:
        from calibrate_perf import calibrate  # bench/ is on sys.path when run as a script

        cal = calibrate(engine)
        out["performance_model"] = {
            "fitted": cal["fitted"],
            "held_out_max_abs_error_pct": cal["held_out_max_abs_error_pct"],
            "held_out": cal["held_out"],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--skip-calibration",
        action="store_true",
        help="leave out the performance-model calibration (~2 min)",
    )
    args = parser.parse_args()
    figures = run(not args.skip_calibration)
    print(
        json.dumps(figures, indent=1)
        if args.json
        else "\n".join(f"{k:>28}: {v}" for k, v in figures.items())
    )


if __name__ == "__main__":
    main()
