"""The one traffic model (mission/traffic.py) against the real serialisation: job bundles
sealed as the ground seals them, answer chunks encoded as nodes send them (RFC 9171
bundles, ``dtn.bundle.encode``, with their BPSec blocks)."""

from __future__ import annotations

import numpy as np
import pytest

from starcompute.compute.engine import (
    GenerationRequest,
    Message,
    TokenLogprob,
    prompt_token_count,
)
from starcompute.dtn.bpsec import Bpsec, new_secret
from starcompute.dtn.bundle import Bundle, encode
from starcompute.dtn.eid import MISSION_CONTROL, Eid, Service
from starcompute.mission.traffic import (
    TYPICAL_MODEL,
    TYPICAL_QUERY_ID,
    answer_bytes,
    answer_bytes_for,
    chunk_bytes,
    job_bytes,
    query_bytes_for,
)
from starcompute.node.jobs import Chunk, Query, seal_job
from starcompute.security.telecommand import GroundKeys, Key


@pytest.mark.parametrize("tokens", [1, 40, 200, 4096])
def test_query_sized_by_tokens_matches_a_sealed_job(tokens: int) -> None:
    """A prompt known only by its token count is sized as a sealed job with that many
    tokens of text (4 bytes each) would be: within the 4 bytes CBOR's length header may
    add for the longer text."""
    text = "abc " * tokens
    real = job_bytes(Query(TYPICAL_QUERY_ID, messages=(("user", text),)), TYPICAL_MODEL)
    assert abs(float(query_bytes_for(tokens)) - real) <= 4


def _chunk(text: str, final: bool, logprobs: tuple[TokenLogprob, ...] = ()) -> Chunk:
    big = 2**40  # DTN milliseconds of 2026: the widest CBOR integers a chunk carries
    return Chunk(
        TYPICAL_QUERY_ID, 99, text, final, "STAR-COMPUTE-2800-P99-S99", 4096, big, big, big,
        big, big, "length" if final else None, 4096, 4096, logprobs=logprobs,
    )  # fmt: skip


SECURITY = Bpsec({2899: new_secret()})  # the node's BPSec keys: BIB and BCB on every one


def _wire(chunk: Chunk) -> int:
    to = Eid(MISSION_CONTROL, int(Service.ANSWER))
    bundle = Bundle(Eid(2899, int(Service.ANSWER)), to, 2**40, 7, chunk.to_bytes(), 86_400_000)
    return len(encode(SECURITY.protect(bundle).forwarded_by(Eid(2898, 0))))


@pytest.mark.parametrize("tokens", [1, 200])
def test_job_booking_covers_a_real_job_bundle(tokens: int) -> None:
    """A job booked at job_bytes is never smaller than its bundle on the wire: sealed,
    BPSec-protected, forwarded, with the widest creation time and sequence number."""
    query = Query(TYPICAL_QUERY_ID, messages=(("user", "abc " * tokens),))
    payload = seal_job(GroundKeys(Key.generate(1)), query, TYPICAL_MODEL)
    up = Bundle(Eid(MISSION_CONTROL, 1), Eid(2899, 1), 2**40, 2**32, payload, 7_200_000)
    wire = len(encode(SECURITY.protect(up).forwarded_by(Eid(2898, 0))))
    assert wire <= job_bytes(query, TYPICAL_MODEL) <= wire + 16


@pytest.mark.parametrize("text", ["", "Paris.", "火星 🚀 " * 8, "é" * 200])
def test_chunk_framing_covers_a_real_chunk_bundle(text: str) -> None:
    """A chunk booked at chunk_bytes(text) is never larger on the wire, with the widest
    fields it can carry and the previous-node block of a forwarded bundle."""
    for final in (False, True):
        chunk = _chunk(text, final)
        assert _wire(chunk) <= chunk_bytes(chunk)


def test_answer_booking_covers_its_chunks() -> None:
    """The answer's booking (8 bytes per token, framing per chunk and the final one)
    covers the chunks of an answer of that many tokens of up to 8 bytes each."""
    tokens, per_chunk = 21, 8
    pieces = ["火星🚀"[: 1 + i % 3] for i in range(tokens)]  # 3 to 8 UTF-8 bytes each
    texts = ["".join(pieces[i : i + per_chunk]) for i in range(0, tokens, per_chunk)]
    wire = sum(chunk_bytes(_chunk(t, False)) for t in texts) + chunk_bytes(_chunk("", True))
    assert wire <= answer_bytes(tokens, per_chunk)
    many = np.array([1, 8, 9, 21, 1024])
    assert answer_bytes_for(many).tolist() == [answer_bytes(int(n)) for n in many]


@pytest.mark.parametrize("alternatives", [0, 3, 20])
def test_logprob_booking_covers_the_chunks_that_carry_them(alternatives: int) -> None:
    """With log-probabilities asked for, the booking covers chunks carrying an entry per
    token with that many alternatives (16-byte tokens, the widest ids and floats), and
    each chunk is sized with the entries it carries."""
    tokens, per_chunk = 21, 8

    def entry(i: int) -> TokenLogprob:
        top = tuple((2**31 - k, b"x" * 16, -1.0 / (k + 1)) for k in range(alternatives))
        return TokenLogprob(2**31 - i, b"y" * 16, -0.123456789, top)

    entries = [entry(i) for i in range(tokens)]
    chunks = [
        _chunk("火星🚀" * 2, False, tuple(entries[i : i + per_chunk]))
        for i in range(0, tokens, per_chunk)
    ]
    chunks.append(_chunk("", True))
    for chunk in chunks:
        assert _wire(chunk) <= chunk_bytes(chunk)
    assert sum(chunk_bytes(c) for c in chunks) <= answer_bytes(tokens, per_chunk, alternatives)
    assert answer_bytes(tokens, per_chunk, alternatives) > answer_bytes(tokens, per_chunk)


def test_prompt_tokens_from_the_tokenizer_or_the_estimate() -> None:
    request = GenerationRequest(messages=(Message("user", "What is the capital of France?"),))
    assert prompt_token_count(request, lambda r: 17) == 17
    assert prompt_token_count(request) == round(1.3 * 6) + 4
    assert prompt_token_count(GenerationRequest(prompt="x")) == 1
