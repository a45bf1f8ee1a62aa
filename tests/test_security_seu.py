"""Radiation faults on the real engine (issue 10): bit flips in the loaded weights are
all found by the scrubber's checksums within one scrub, repaired from the golden copy, and
no answer computed on corrupted weights is returned (each compared with the fault-free
greedy answer). Rates from the radiation model (Alsat-1 SRAM: 4e-7 /bit/day, SAA-weighted).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from starcompute.compute.engine import GenerationRequest
from starcompute.security.seu import ProtectedEngine, SeuInjector, WeightGuard
from starcompute.spacecraft.radiation import seu_rate_per_bit_per_day
from starcompute.train.config import TrainConfig
from starcompute.train.model import build_model


def _small_model() -> torch.nn.Module:
    return build_model(TrainConfig(hidden=32, layers=2, window=32))


def test_scrub_finds_and_repairs_every_flip() -> None:
    model = _small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    guard = WeightGuard(model)
    inject = SeuInjector(guard, seed=3)
    rng = np.random.default_rng(0)
    for _ in range(20):
        inject.flip(int(rng.integers(1, 6)))
        guard.scrub()
    assert len(inject.flips) > 20
    assert inject.detection() == {"injected": len(inject.flips), "missed": 0, "late": 0}
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # bit-exact repair from the golden copy


def test_exposure_follows_the_radiation_model_rate() -> None:
    """Poisson mean = rate x bits x time x acceleration; the SAA rate is far higher."""
    guard = WeightGuard(_small_model())
    saa = float(
        seu_rate_per_bit_per_day(np.array([-25.0]), np.array([-45.0]), np.array([500.0]))[0]
    )
    quiet = float(
        seu_rate_per_bit_per_day(np.array([40.0]), np.array([100.0]), np.array([500.0]))[0]
    )
    assert saa > 10 * quiet
    inject = SeuInjector(guard, seed=1, acceleration=1e6)
    counts = [len(inject.expose(saa, 60.0)) for _ in range(400)]
    mean = saa * guard.bits * 60.0 / 86400.0 * 1e6
    assert np.mean(counts) == pytest.approx(mean, rel=4 / np.sqrt(400 * mean))


@pytest.fixture(scope="module")
def engine():  # type: ignore[no-untyped-def]
    from starcompute.compute.real import TransformersEngine

    return TransformersEngine(max_batch=64)


# Raw prompts of 15 tokens at most and 4-token answers, 64 to a batch: on a CPU the cost of
# an answer is its prompt's prefill and one decode step per token, and a full batch of 64
# costs about 1.6 batches of 32 (the chat template alone would add 16 tokens to each).
BATCH = [
    GenerationRequest(prompt=f"Q: What is {i} + {i * 3}?\nA:", max_tokens=4) for i in range(64)
]


def test_no_corrupted_answer_over_1000_real_queries(engine) -> None:  # type: ignore[no-untyped-def]
    reference = [c.text for c in engine.generate(BATCH)]  # fault-free greedy answers
    guard = WeightGuard(engine.model)
    inject = SeuInjector(guard, seed=7)

    # control: unprotected, one worst-case upset changes answers (the test can fail)
    inject.flip(3, exponent_msb=True)
    corrupted = [c.text for c in engine.generate(BATCH)]
    assert corrupted != reference
    guard.scrub()

    rng = np.random.default_rng(11)

    def upsets() -> None:  # during generation: ~1 upset per 3 batches
        if rng.random() < 0.0012:
            inject.flip(1, exponent_msb=True)

    protected = ProtectedEngine(engine, guard, during_batch=upsets)
    streamed: dict[int, str] = {}
    answers = 0
    while answers < 1000:
        out = protected.generate(
            BATCH, lambda i, piece: streamed.__setitem__(i, streamed.get(i, "") + piece)
        )
        assert [c.text for c in out] == reference
        assert [streamed.pop(i) for i in range(len(BATCH))] == reference  # released clean
        answers += len(out)
    stats = inject.detection()
    assert stats["injected"] >= 5 and protected.reruns >= 3
    assert stats["missed"] == 0 and stats["late"] == 0  # each found by the next scrub
    assert answers == 1024 and protected.answers_affected == 64 * protected.reruns
