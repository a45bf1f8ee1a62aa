"""Continuous batching (``compute.continuous``) on the default model, SmolLM2-135M.

The reference is the static batch (``engine.generate``, itself checked against one request
at a time and against ``transformers`` in test_engine.py / test_decoder.py): the same
greedy tokens whatever joins or leaves the batch, with chunked prefill and the cached
chat-template prefix. Ordering is checked with the batcher's own step counter, never with
wall-clock timings.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from starcompute.compute.batcher import Batcher
from starcompute.compute.engine import Completion, GenerationRequest, Message
from starcompute.errors import InputError

pytest.importorskip("torch")


def _ask(question: str, **kw: Any) -> GenerationRequest:
    return GenerationRequest(messages=(Message("user", question),), **kw)


@pytest.fixture()
def continuous(smollm2: Any) -> Any:
    from starcompute.compute.continuous import ContinuousBatcher

    made: list[Any] = []

    def make(**kw: Any) -> Any:
        made.append(ContinuousBatcher(smollm2, **kw))
        return made[-1]

    yield make
    for b in made:
        b.close()


def test_same_tokens_as_the_static_batch(smollm2: Any, continuous: Any) -> None:
    requests = [
        _ask(f"Write a short note about satellite number {i}.", max_tokens=6 + 3 * i)
        for i in range(5)
    ]
    requests.append(GenerationRequest(prompt="The capital of France is", max_tokens=8))
    requests.append(_ask("Tell me a story.", max_tokens=10, temperature=0.8, seed=11))
    static = smollm2.generate(requests)
    # 3 rows (the others queue), 16-token prefill chunks (prompts of ~40 are chunked)
    b = continuous(max_batch=3, prefill_tokens=16)
    done = [f.result(timeout=120) for f in [b.submit(r) for r in requests]]
    assert [c.token_ids for c in done] == [c.token_ids for c in static]
    assert [c.text for c in done] == [c.text for c in static]
    assert [c.finish_reason for c in done] == [c.finish_reason for c in static]
    assert [c.prompt_tokens for c in done] == [c.prompt_tokens for c in static]
    assert b.prefix_hits == 6  # every chat prompt reused the template's prefix
    assert max(n for _, _, n in b.history) <= 3


def test_prefix_cache_off_gives_the_same_tokens(smollm2: Any, continuous: Any) -> None:
    r = _ask("Name a planet.", max_tokens=8)
    with_prefix = continuous().submit(r).result(timeout=60)
    without = continuous(prefix_cache=False)
    assert without.submit(r).result(timeout=60).token_ids == with_prefix.token_ids
    assert without.prefix_hits == 0


def _first_piece_steps(b: Any, request: GenerationRequest) -> tuple[Any, threading.Event, list]:
    seen = threading.Event()
    steps: list[int] = []

    def on_piece(piece: str) -> None:
        if not steps:
            steps.append(b.steps)
            seen.set()

    return b.submit(request, on_piece), seen, steps


def test_an_arrival_gets_its_first_token_before_the_running_batch_ends(
    continuous: Any,
) -> None:
    b = continuous(max_batch=8)
    long = _ask("Count slowly.", max_tokens=40, ignore_eos=True)
    first, started, _ = _first_piece_steps(b, long)
    assert started.wait(60)
    late, _, late_steps = _first_piece_steps(b, _ask("Hello", max_tokens=3, ignore_eos=True))
    a, c = first.result(timeout=120), late.result(timeout=120)
    assert a.completion_tokens == 40 and c.completion_tokens == 3
    # the arrival joined at a decode step while the first request ran: its first token
    # came long before the first request's 40 steps were done
    assert late_steps[0] < 20


def test_static_batcher_makes_the_arrival_wait(smollm2: Any) -> None:
    """The reference behaviour the test above rules out (and why it exists)."""
    b = Batcher(smollm2, max_batch=8, gather_s=0.0, max_gather_s=0.0)
    try:
        order: list[str] = []
        started = threading.Event()
        first = b.submit(
            _ask("Count slowly.", max_tokens=12, ignore_eos=True),
            lambda p: (started.set(), order.append("a")),
        )
        assert started.wait(60)
        late = b.submit(_ask("Hello", max_tokens=2, ignore_eos=True), lambda p: order.append("b"))
        first.result(timeout=120), late.result(timeout=120)
        assert "a" not in order[order.index("b") :]  # the arrival waited for the whole batch
    finally:
        b.close()


def test_seeded_sampling_is_the_same_at_batch_sizes_1_and_8(continuous: Any) -> None:
    seeded = _ask("Tell me about the Moon.", max_tokens=12, temperature=0.9, top_p=0.9, seed=7)
    alone = continuous(max_batch=1).submit(seeded).result(timeout=60)
    b = continuous(max_batch=8)
    others = [
        _ask(f"Question {i}: what is {i} + {i}?", max_tokens=12, temperature=1.0, seed=100 + i)
        for i in range(7)
    ]
    futures = [b.submit(r) for r in [*others[:3], seeded, *others[3:]]]
    done = [f.result(timeout=120) for f in futures]
    assert max(n for _, _, n in b.history) == 8  # really a batch of 8
    assert done[3].token_ids == alone.token_ids


def test_cancelling_a_stream_frees_its_row_at_once(continuous: Any) -> None:
    b = continuous(max_batch=1)  # one row: the next request needs the cancelled one's
    stop = threading.Event()
    pieces: list[str] = []

    def on_piece(piece: str) -> None:
        pieces.append(piece)
        if len(pieces) == 3:
            stop.set()

    hog = b.submit(
        _ask("Write a long essay.", max_tokens=300, ignore_eos=True, cancelled=stop.is_set),
        on_piece,
    )
    nxt, _, nxt_steps = _first_piece_steps(b, _ask("Hi", max_tokens=2, ignore_eos=True))
    cancelled: Completion = hog.result(timeout=120)
    assert cancelled.finish_reason == "cancelled"
    assert cancelled.completion_tokens <= 4
    assert nxt.result(timeout=60).completion_tokens == 2
    assert nxt_steps[0] <= 5  # it started right after, not after 300 steps


def test_a_refused_request_fails_alone(continuous: Any) -> None:
    b = continuous()
    bad = b.submit(GenerationRequest(prompt="word " * 9000, max_tokens=4))
    good = b.submit(_ask("Hi", max_tokens=2))
    with pytest.raises(InputError, match="context window"):
        bad.result(timeout=10)
    assert good.result(timeout=60).completion_tokens >= 1


def test_the_key_value_budget_limits_the_rows(continuous: Any) -> None:
    b = continuous(max_batch=8, kv_mb=1.0)  # ~22 positions: one request at a time
    done = [f.result(timeout=120) for f in [b.submit(_ask("Hi", max_tokens=3)) for _ in range(3)]]
    assert all(c.completion_tokens >= 1 for c in done)
    assert max(n for _, _, n in b.history) == 1


def test_bad_options() -> None:
    from starcompute.compute.continuous import ContinuousBatcher

    with pytest.raises(InputError, match="max batch"):
        ContinuousBatcher(None, max_batch=0)  # type: ignore[arg-type]


def test_engines_pick_their_scheduler(smollm2: Any) -> None:
    from starcompute.compute.continuous import ContinuousBatcher
    from starcompute.security.seu import ProtectedEngine

    s = smollm2.scheduler(4)
    p = ProtectedEngine.of(smollm2).scheduler(4)
    try:
        assert isinstance(s, ContinuousBatcher)
        assert isinstance(p, Batcher)  # answers released only after their weights verified
    finally:
        s.close()
        p.close()


def test_grammar_logprobs_and_echo_same_as_the_static_batch(smollm2: Any, continuous: Any) -> None:
    """Constrained decoding, log-probabilities and a scored prompt (issue 22) give the
    same tokens and values in the continuous batcher as in the static batch."""
    from starcompute.compute import grammars

    schema = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 99}},
              "required": ["n"], "additionalProperties": False}  # fmt: skip
    requests = [
        _ask("Give a number as JSON.", max_tokens=30, grammar=grammars.json_schema(schema)),
        _ask("Name a colour.", max_tokens=5, logprobs=2),
        GenerationRequest(prompt="The capital of France is", max_tokens=0, logprobs=1, echo=True),
    ]
    static = smollm2.generate(requests)
    b = continuous(max_batch=3)
    done = [f.result(timeout=120) for f in [b.submit(r) for r in requests]]
    assert [c.token_ids for c in done] == [c.token_ids for c in static]
    assert static[0].finish_reason == "stop" and set(json.loads(static[0].text)) == {"n"}
    for a, s in zip(done[1].logprobs or [], static[1].logprobs or [], strict=True):
        assert a.token == s.token and a.logprob == pytest.approx(s.logprob, abs=1e-4)
        assert [t for t, _, _ in a.top] == [t for t, _, _ in s.top]
    prompt = smollm2.encode(requests[2])
    assert done[2].completion_tokens == 0 and len(done[2].prompt_logprobs or []) == len(prompt)
    assert done[2].prompt_logprobs == static[2].prompt_logprobs


def test_a_request_whose_grammar_fails_fails_alone(
    smollm2: Any, continuous: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the grammar's mask switched off, the constrained request's matcher meets a
    token outside its grammar: that request fails with the reason, the other one in the
    same batch finishes (before, the error stranded a request between prefill and the
    running rows and its caller waited for ever)."""
    from starcompute.compute import grammars
    from starcompute.errors import StarcomputeError

    monkeypatch.setattr(grammars.Matcher, "mask", lambda self, logits: logits)
    b = continuous(max_batch=2)
    bad = b.submit(_ask("Describe a cat.", max_tokens=20, grammar=grammars.json_object()))
    good = b.submit(_ask("Name a colour.", max_tokens=6))
    with pytest.raises(StarcomputeError, match="constrained decoding failed"):
        bad.result(timeout=120)
    assert good.result(timeout=120).completion_tokens > 0
