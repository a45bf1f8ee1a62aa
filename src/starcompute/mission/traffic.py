"""One traffic model: the bytes a query, an answer and its chunks take on the space link,
for every planner (the live ground segment, ``ask``, ``availability``, the simulator).

* A **query** travels as a job bundle: the query (CBOR) and its ``run-job`` telecommand
  sealed under the satellite's key, in a bundle. With its text known, it is sized by
  sealing it (:func:`job_bytes`); known only by its token count (availability sampling,
  the simulator), as that sealed job's framing plus ``text_bytes_per_token`` bytes of
  text per prompt token (:func:`query_bytes_for`).
* An **answer** is booked before it exists, at the upper bound of its text (8 bytes of
  UTF-8 per token of ``max_tokens``) plus one chunk's framing per chunk: the first token
  alone, then ``chunk_tokens`` a chunk, then the final chunk (``node.pace.ChunkBuilder``;
  :func:`answer_bytes`); each chunk that comes down is its text plus that framing
  (:func:`chunk_bytes`). Log-probabilities, when a request asks for them, are booked per
  token at their CBOR size with the alternatives asked for (:func:`logprob_bytes`), and
  each chunk is sized with those it carries.
* **Prompt tokens**: the engine's tokenizer where there is one, else the estimate of
  ``compute.engine.prompt_token_count``.
"""

from __future__ import annotations

import functools

import cbor2
import numpy as np
import numpy.typing as npt

from starcompute.node.jobs import DEFAULT_CHUNK_TOKENS, Chunk, Query, seal_job
from starcompute.security.telecommand import GroundKeys, Key

# primary block, hop count, previous node, CRCs and the BPSec blocks (BIB with its 48-byte
# HMAC, BCB with its IV and tag: 137 bytes): tests/test_traffic.py, at most 229 and 520
BUNDLE_OVERHEAD_BYTES = 232
CHUNK_OVERHEAD_BYTES = 525  # a chunk bundle besides its text
ANSWER_BYTES_PER_TOKEN = 8  # booked: the most UTF-8 one token's text takes here
LOGPROB_ENTRY_BYTES = 33  # list 1, id <= 5, bytes <= 17, float64 9, list of alternatives 1
LOGPROB_ALTERNATIVE_BYTES = 32  # list 1, id <= 5, bytes <= 17, float64 9
TEXT_BYTES_PER_TOKEN = 4.0  # a prompt known by its token count: ~4 characters a token
TYPICAL_QUERY_ID = "chatcmpl-" + "0" * 24  # the gateway's request ids
TYPICAL_MODEL = "smollm2-135m-instruct"

FloatArray = npt.NDArray[np.float64]


def job_bytes(query: Query, model: str) -> int:
    """Size of the job bundle that carries ``query`` (sealed under a throwaway key)."""
    return len(seal_job(GroundKeys(Key.generate(1)), query, model)) + BUNDLE_OVERHEAD_BYTES


@functools.cache
def job_framing_bytes() -> int:
    """A job bundle's bytes besides the prompt's text (one user message, typical ids)."""
    return job_bytes(Query(TYPICAL_QUERY_ID, messages=(("user", ""),)), TYPICAL_MODEL)


def query_bytes_for(
    prompt_tokens: npt.ArrayLike, text_bytes_per_token: float = TEXT_BYTES_PER_TOKEN
) -> FloatArray:
    """A query's bundle bytes known only by its prompt tokens (arrays welcome)."""
    tokens = np.asarray(prompt_tokens, dtype=np.float64)
    return job_framing_bytes() + text_bytes_per_token * tokens


def answer_bytes(
    max_tokens: int,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    logprobs: int | None = None,
    echoed_tokens: int = 0,
) -> int:
    """The bytes booked for an answer of up to ``max_tokens`` tokens (with ``logprobs``
    alternatives per token, and an ``echoed_tokens`` prompt's, if asked for)."""
    text = int(answer_bytes_for(max_tokens, chunk_tokens))
    if logprobs is None:
        return text
    return text + (max_tokens + echoed_tokens) * logprob_bytes(logprobs)


def logprob_bytes(alternatives: int) -> int:
    """Booked per token whose log-probability comes down with ``alternatives``: CBOR of
    [id, bytes, float64, [[id, bytes, float64], ...]] for tokens of up to 16 bytes."""
    return LOGPROB_ENTRY_BYTES + alternatives * LOGPROB_ALTERNATIVE_BYTES


def answer_bytes_for(
    max_tokens: npt.ArrayLike, chunk_tokens: int = DEFAULT_CHUNK_TOKENS
) -> FloatArray:
    """:func:`answer_bytes` for many answers at once."""
    tokens = np.asarray(max_tokens, dtype=np.float64)
    chunks = np.ceil(np.maximum(tokens - 1, 0) / chunk_tokens) + 2  # first token, ..., final
    out: FloatArray = ANSWER_BYTES_PER_TOKEN * tokens + chunks * CHUNK_OVERHEAD_BYTES
    return out


def chunk_bytes(chunk: Chunk) -> int:
    """The bytes of one answer chunk on the way down (its text, and the log-probabilities
    it carries, beside its framing)."""
    extra = 0
    if chunk.logprobs or chunk.prompt_logprobs:
        entries = [t.to_list() for t in (*chunk.logprobs, *chunk.prompt_logprobs)]
        extra = len(cbor2.dumps(entries))
    return CHUNK_OVERHEAD_BYTES + len(chunk.text.encode()) + extra
