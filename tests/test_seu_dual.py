"""Upsets in activations (issue 10), on the real engine: transient, invisible to the
weights' checksums, caught only by dual execution. (Apart from test_security_seu.py so
that the two long real-engine tests can run on different test workers.)"""

from __future__ import annotations

import pytest

from starcompute.compute.engine import GenerationRequest, Message
from starcompute.security.seu import ActivationUpsets, ProtectedEngine, WeightGuard


@pytest.fixture(scope="module")
def engine():  # type: ignore[no-untyped-def]
    from starcompute.compute.real import TransformersEngine

    return TransformersEngine(max_batch=8)


# An empty system prompt keeps the prefill (most of a short answer's cost on a CPU) small.
BATCH = [
    GenerationRequest(
        messages=(Message("system", ""), Message("user", f"What is {i} + {i * 3}?")),
        max_tokens=6,
    )
    for i in range(8)
]


def test_dual_execution_catches_activation_upsets(engine) -> None:  # type: ignore[no-untyped-def]
    """Upsets in activations are transient and invisible to weight checksums: without
    dual execution they corrupt answers; with it (each batch run twice, answers compared,
    a disagreement re-run) none of 32 answers differs from the fault-free one."""
    batch = BATCH
    reference = [c.text for c in engine.generate(batch)]
    upsets = ActivationUpsets(engine.model, p_per_call=4e-4, seed=5)
    try:
        wrong = sum(
            c.text != r
            for _ in range(2)
            for c, r in zip(engine.generate(batch), reference, strict=True)
        )
        assert wrong > 0 and upsets.flips > 0  # the control: they do corrupt answers
        guard = WeightGuard(engine.model)
        protected = ProtectedEngine(engine, guard, dual=True)
        for _ in range(4):
            assert [c.text for c in protected.generate(batch)] == reference
        assert protected.disagreements >= 1 and guard.blocks_corrected == 0
    finally:
        upsets.remove()
    assert [c.text for c in engine.generate(batch)] == reference  # hooks gone


def test_dual_execution_answers_sampled_requests(engine) -> None:  # type: ignore[no-untyped-def]
    """Issue 19: a sampled request without a seed gets one, so the two runs draw the
    same tokens and agree (before, they disagreed and the batch failed after its
    retries); a seed the client gave is kept."""
    sampled = [
        GenerationRequest(messages=(Message("user", f"Say a word about {w}."),),
                          max_tokens=6, temperature=1.0, top_p=0.95)
        for w in ("the Moon", "Mars", "rain", "tea")
    ]  # fmt: skip
    given = GenerationRequest(prompt="Once upon a time", max_tokens=6, temperature=0.9, seed=3)
    protected = ProtectedEngine.of(engine, dual=True)
    done = protected.generate([*sampled, given])
    assert all(c.completion_tokens > 0 for c in done)
    assert protected.disagreements == 0 and protected.reruns == 0
    assert done[-1].token_ids == engine.generate([given])[0].token_ids  # its own seed kept


def test_serve_seu_protect_dual_answers_sampled_requests() -> None:
    """Issue 19, end to end: ``serve --seu-protect --dual`` answers sampled chat requests
    (no seed given) from clients at once; every batch ran twice and both runs agreed.
    (Both the gateway and ``ProtectedEngine`` give an unseeded sampled request a seed;
    with neither, the two runs disagree and this test fails.)"""
    import concurrent.futures

    import httpx

    from servers import free_port, serve

    port = free_port()
    server = serve(port, "--hours", "2", "--no-wait", "--max-batch", "4",
                   "--seu-protect", "--dual")  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def ask(topic: str) -> httpx.Response:
        body = {
            "model": "smollm2-135m-instruct",
            "messages": [{"role": "user", "content": f"One word about {topic}."}],
            "max_tokens": 8,
            "temperature": 1.5,  # two unseeded runs of 8 tokens would surely differ
        }
        return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=180)

    try:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(ask, ("the Moon", "rain", "tea")))
        radiation = httpx.get(f"{url}/healthz", timeout=10).json()["radiation"]
    finally:
        server.terminate()
        server.wait(timeout=60)
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.json()["usage"]["completion_tokens"] > 0
    assert radiation["batches"] >= 1
    assert radiation["dual_disagreements"] == 0 and radiation["batches_rerun"] == 0
