"""Benchmark: what constrained decoding (structured outputs, tool calls) costs per token.

One command: ``.venv/bin/python bench/bench_grammar.py [--requests 16] [--json]``.

1. **The libraries alone**, on SmolLM2's 49,152-token vocabulary and one JSON schema:
   compile time, then the per-token cost of computing the allowed-token mask and
   advancing, replaying the same valid answer through ``llguidance`` (what the engine
   uses) and ``outlines-core`` (the other maintained Rust library that runs on this CPU;
   ``xgrammar`` would pull Triton, ``lm-format-enforcer`` is pure Python). Note what each
   enforces: outlines-core's JSON-schema regex drops integer bounds, llguidance keeps them.
2. **End to end on the engine** (continuous batcher): ``--requests`` chat requests under
   the schema (greedy) against the same prompts unconstrained, each generating as many
   tokens as its structured answer had (``ignore_eos``); aggregate tokens/s of both and
   their ratio, measured in one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from typing import Any

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "count": {"type": "integer", "minimum": 0, "maximum": 999},
        "ok": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
    },
    "required": ["name", "count", "ok", "tags"],
    "additionalProperties": False,
}
TOPICS = [
    "a cat", "the Moon", "a red car", "tea", "Paris", "a violin", "rain", "a robot",
    "the sea", "a book", "Mars", "bread", "a satellite", "snow", "a river", "coffee",
]  # fmt: skip


def _per_token_us(step: Any, tokens: list[int]) -> tuple[float, float]:
    times = []
    for t in tokens:
        t0 = time.perf_counter()
        step(t)
        times.append(1e6 * (time.perf_counter() - t0))
    return statistics.fmean(times), sorted(times)[int(0.99 * (len(times) - 1))]


def libraries(engine: Any, answer: list[int]) -> dict[str, Any]:
    import numpy as np
    import torch
    from llguidance import LLMatcher
    from outlines_core import Guide, Index, Vocabulary
    from outlines_core.json_schema import build_regex_from_schema

    from starcompute.compute import grammars

    tok = engine.tokenizer
    g = tok.guidance(engine.eos_ids)
    grammar = grammars.json_schema(SCHEMA)
    t0 = time.perf_counter()
    matcher = LLMatcher(g, grammar, log_level=0)
    bits = np.zeros((g.vocab_size + 31) // 32, dtype=np.int32)
    matcher.unsafe_compute_mask_ptr(bits.ctypes.data, bits.nbytes)  # compiles lazily
    ll_compile_s = time.perf_counter() - t0

    def ll_step(token: int) -> None:
        matcher.unsafe_compute_mask_ptr(bits.ctypes.data, bits.nbytes)
        matcher.consume_token(token)

    matcher.reset()
    ll_mean, ll_p99 = _per_token_us(ll_step, answer)

    vocab: dict[bytes, list[int]] = {}
    for i in range(g.vocab_size):
        if i not in engine.eos_ids and not g.is_special_token(i):
            b = bytes(g.decode_bytes([i]))
            if b:
                vocab.setdefault(b, []).append(i)
    eos = min(engine.eos_ids)
    t0 = time.perf_counter()
    index = Index(build_regex_from_schema(json.dumps(SCHEMA)), Vocabulary(eos, vocab))
    oc_compile_s = time.perf_counter() - t0
    guide = Guide(index)
    mask = torch.zeros((g.vocab_size + 31) // 32, dtype=torch.int32)

    def oc_step(token: int) -> None:
        guide.write_mask_into(mask.data_ptr(), mask.numel(), mask.element_size())
        guide.advance(token)

    oc_mean, oc_p99 = _per_token_us(oc_step, answer)
    return {
        "answer_tokens": len(answer),
        "llguidance": {"compile_s": round(ll_compile_s, 4), "mask_us_mean": round(ll_mean, 1),
                       "mask_us_p99": round(ll_p99, 1), "integer_bounds_enforced": True},
        "outlines_core": {"compile_s": round(oc_compile_s, 4), "mask_us_mean": round(oc_mean, 1),
                          "mask_us_p99": round(oc_p99, 1), "integer_bounds_enforced": False},
    }  # fmt: skip


def end_to_end(engine: Any, n: int) -> tuple[dict[str, Any], list[int]]:
    from starcompute.compute import grammars
    from starcompute.compute.engine import GenerationRequest, Message

    grammar = grammars.json_schema(SCHEMA)
    prompts = [(Message("user", f"Describe {TOPICS[i % len(TOPICS)]} as a JSON record."),)
               for i in range(n)]  # fmt: skip
    constrained = [GenerationRequest(messages=p, max_tokens=200, grammar=grammar) for p in prompts]
    scheduler = engine.scheduler(n)
    try:
        scheduler.submit(replace(constrained[0], max_tokens=4)).result()  # warm-up
        t0 = time.perf_counter()
        done = [f.result() for f in [scheduler.submit(r) for r in constrained]]
        constrained_s = time.perf_counter() - t0
        free = [GenerationRequest(messages=p, max_tokens=c.completion_tokens, ignore_eos=True)
                for p, c in zip(prompts, done, strict=True)]  # fmt: skip
        t0 = time.perf_counter()
        plain = [f.result() for f in [scheduler.submit(r) for r in free]]
        plain_s = time.perf_counter() - t0
    finally:
        scheduler.close()
    valid = sum(_valid(c.text) for c in done)
    tokens = sum(c.completion_tokens for c in done)
    assert tokens == sum(c.completion_tokens for c in plain)
    return {
        "requests": n,
        "tokens": tokens,
        "valid_json": valid,
        "constrained_tok_s": round(tokens / constrained_s, 1),
        "unconstrained_tok_s": round(tokens / plain_s, 1),
        "constrained_over_unconstrained_time": round(constrained_s / plain_s, 3),
    }, done[0].token_ids


def _valid(text: str) -> bool:
    import jsonschema

    try:
        jsonschema.validate(json.loads(text), SCHEMA)
    except (ValueError, jsonschema.ValidationError):
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16, help="structured requests (16)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    from starcompute.compute.real import TransformersEngine

    engine = TransformersEngine(max_batch=args.requests)
    e2e, answer = end_to_end(engine, args.requests)
    out = {"engine": e2e, "libraries": libraries(engine, answer)}
    if args.json:
        print(json.dumps(out))
        return
    lib = out["libraries"]
    print(f"answer replayed: {lib['answer_tokens']} tokens")
    for name in ("llguidance", "outlines_core"):
        r = lib[name]
        print(f"{name:>13}: compile {r['compile_s']:.4f} s, mask+advance {r['mask_us_mean']} us "
              f"mean / {r['mask_us_p99']} us p99 per token, integer bounds "
              f"{'enforced' if r['integer_bounds_enforced'] else 'dropped'}")  # fmt: skip
    e = out["engine"]
    print(f"engine: {e['requests']} requests, {e['tokens']} tokens, {e['valid_json']} valid; "
          f"constrained {e['constrained_tok_s']} tok/s, unconstrained {e['unconstrained_tok_s']} "
          f"tok/s: time x{e['constrained_over_unconstrained_time']}")  # fmt: skip


if __name__ == "__main__":
    main()
