"""Benchmark: radiation upsets on the real engine, protected by checksums and re-runs.

One command: ``.venv/bin/python bench/bench_seu.py [--queries 1024] [--json]``. SmolLM2
answers the same 32 chat prompts (6 tokens, greedy) in batches of 32, first unprotected
and fault-free (the reference, and the baseline wall time), then through
``ProtectedEngine`` while upsets strike the weights during generation (the most significant
exponent bit of a random weight, ~1 per 4 batches). Prints upsets injected, found within
one scrub, batches re-run, corrupted answers returned (must be 0) and the overhead of
scrubbing and re-runs as a ratio to the unprotected wall time, measured in one run.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from starcompute.compute.engine import GenerationRequest, Message
from starcompute.compute.real import TransformersEngine
from starcompute.security.seu import ProtectedEngine, SeuInjector, WeightGuard

BATCH = [
    GenerationRequest(messages=(Message("user", f"What is {i} + {i * 3}?"),), max_tokens=6)
    for i in range(32)
]


def run(queries: int) -> dict[str, object]:
    engine = TransformersEngine(max_batch=32)
    engine.generate(BATCH[:2])  # warm-up
    batches = -(-queries // len(BATCH))
    t0 = time.perf_counter()
    reference = [c.text for c in engine.generate(BATCH)]
    for _ in range(batches - 1):
        engine.generate(BATCH)
    plain_s = time.perf_counter() - t0
    guard = WeightGuard(engine.model)
    t1 = time.perf_counter()
    guard.scrub()
    scrub_s = time.perf_counter() - t1
    inject = SeuInjector(guard, seed=7)
    rng = np.random.default_rng(11)

    def upsets() -> None:
        if rng.random() < 0.0015:
            inject.flip(1, exponent_msb=True)

    protected = ProtectedEngine(engine, guard, during_batch=upsets)
    wrong = 0
    t2 = time.perf_counter()
    for _ in range(batches):
        wrong += sum(c.text != r for c, r in zip(protected.generate(BATCH), reference, strict=True))
    protected_s = time.perf_counter() - t2
    stats = inject.detection()
    return {
        "queries": batches * len(BATCH),
        "weights_mb": round(guard.bits / 8e6, 1),
        "scrub_s": round(scrub_s, 3),
        "upsets_injected": stats["injected"],
        "found_within_one_scrub": stats["injected"] - stats["missed"] - stats["late"],
        "batches_rerun": protected.reruns,
        "answers_recomputed": protected.answers_affected,
        "corrupted_answers_returned": wrong,
        "unprotected_s": round(plain_s, 1),
        "protected_s": round(protected_s, 1),
        "overhead_ratio": round(protected_s / plain_s, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--queries", type=int, default=1024)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    doc = run(args.queries)
    print(
        json.dumps(doc, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in doc.items())
    )


if __name__ == "__main__":
    main()
