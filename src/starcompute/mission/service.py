"""``ask``: one query from the ground to an orbiting model and back, answered for real.

The query travels as a job (``node.jobs``): sealed under the serving satellite's key on
the ground, opened and verified with the satellite's own keys on board, where the real
engine (on this machine, standing in for the satellite's accelerator) answers the query
it was given. Mission control plans the trip over the contact plan with the job's real
size and the real token counts; the satellite's inference time is the performance
model's prediction for the timing model card on its hardware (the local wall time of the
real engine is reported beside it). The answer comes down in chunks, each released at
the satellite's pace and delivered by the earliest route down from then.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from starcompute.compute.engine import Engine, GenerationRequest, Message
from starcompute.dtn.bundle import dtn_ms
from starcompute.errors import InputError
from starcompute.mission.control import Mission, Trace
from starcompute.mission.live import observed
from starcompute.mission.policy import DEFAULT_POLICY
from starcompute.mission.spacelink import Arrival
from starcompute.mission.traffic import answer_bytes, chunk_bytes, job_bytes
from starcompute.mission.twin import chunk_arrival, pace_of
from starcompute.node.jobs import DEFAULT_CHUNK_TOKENS, Chunk, Query, open_job, seal_job
from starcompute.node.pace import ChunkBuilder
from starcompute.security.telecommand import CommandLink

_ids = itertools.count(1)


@dataclass(slots=True)
class Answer:
    text: str
    model: str
    trace: Trace
    local_inference_s: float
    query_bytes: int
    answer_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.text,
            "model": self.model,
            "trace": self.trace.to_dict(),
            "local_inference_s": round(self.local_inference_s, 4),
            "query_bytes": self.query_bytes,
            "answer_bytes": self.answer_bytes,
        }


def ask(
    mission: Mission,
    engine: Engine,
    prompt: str,
    at: np.datetime64,
    station: str | None = None,
    policy: str = DEFAULT_POLICY,
    deadline_s: float = 3600.0,
    max_tokens: int = 128,
    commands: CommandLink | None = None,
) -> Answer:
    if not prompt.strip():
        raise InputError("the prompt is empty")
    request = GenerationRequest(messages=(Message("user", prompt),), max_tokens=max_tokens)
    query = Query.of(f"ask-{next(_ids)}", request, DEFAULT_CHUNK_TOKENS)
    up = job_bytes(query, engine.name)
    prompt_tokens = engine.count_tokens(request)
    # nothing half-done: the deadline with the largest answer, before anything runs
    probe = mission.submit(
        station,
        at,
        prompt_tokens,
        max_tokens,
        up,
        answer_bytes(max_tokens, query.chunk_tokens),
        policy=policy,
        deadline_s=deadline_s,
        commit=False,
    )
    sat = probe.serving_satellite
    links = commands or CommandLink(frozenset(mission.const.names))
    ground, onboard = links.ends(sat)
    verified, _ = open_job(onboard, seal_job(ground, query, engine.name))  # on board
    steps: list[tuple[str, float]] = []
    t0 = time.perf_counter()
    done = engine.generate(
        [verified.request()], lambda _, piece: steps.append((piece, time.perf_counter() - t0))
    )[0]
    host_s = time.perf_counter() - t0
    chunks = _chunks(mission, verified, sat, probe, prompt_tokens, steps, done, host_s)
    down = sum(chunk_bytes(c) for c in chunks)
    trace = mission.submit(
        station,
        at,
        done.prompt_tokens,
        max(done.completion_tokens, 1),
        up,
        down,
        policy=policy,
        deadline_s=deadline_s,
        only=sat,
    )
    chunks = _chunks(mission, verified, sat, trace, prompt_tokens, steps, done, host_s)
    trace.observed = observed("twin", trace, _arrivals(mission, trace, chunks))
    return Answer(done.text, engine.name, trace, host_s, up, down)


def _chunks(
    mission: Mission,
    query: Query,
    sat: str,
    trace: Trace,
    prompt_tokens: int,
    steps: list[tuple[str, float]],
    done: Any,
    host_s: float,
) -> list[Chunk]:
    """The answer cut into chunks as the satellite would send them: host compute times
    counted from the planned inference start (this machine's seconds, taken 1:1)."""
    start = trace.inference_start if trace.inference_start is not None else trace.submitted
    start_ms = dtn_ms(start)
    up = [g for g in trace.legs if g.dst == sat]
    received = dtn_ms(up[0].arrive) if up else start_ms
    builder = ChunkBuilder(
        query, sat, pace_of(mission, sat), received, start_ms, prompt_tokens, mission.max_batch
    )
    out = [c for piece, t in steps if (c := builder.step(piece, start_ms + round(1000 * t)))]
    return [*out, builder.finish(done, start_ms + round(1000 * host_s))]


def _arrivals(mission: Mission, trace: Trace, chunks: list[Chunk]) -> list[Arrival]:
    out: list[Arrival] = []
    last = trace.submitted
    for c in chunks:
        out.append(chunk_arrival(mission, c, last))
        last = out[-1].delivered
    return out
