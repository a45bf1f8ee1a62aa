"""``ask``: one query from the ground to an orbiting model and back, answered for real.

The query is encoded as a space packet; the satellite node decodes it and the real
engine (on this machine, standing in for the satellite's accelerator) answers; the
answer goes back as a packet. Mission control plans the trip over the contact plan with
the real packet sizes and the real token counts; the satellite's inference time is the
performance model's prediction for the timing model card on that satellite's hardware
(the local wall time of the real engine is reported beside it).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from starcompute.compute.engine import Engine
from starcompute.errors import InputError
from starcompute.mission.control import Mission, Trace
from starcompute.mission.node import SatelliteNode
from starcompute.mission.wire import QueryPacket, decode, encode

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
    policy: str = "earliest-completion",
    deadline_s: float = 3600.0,
    max_tokens: int = 128,
) -> Answer:
    if not prompt.strip():
        raise InputError("the prompt is empty")
    query = encode(QueryPacket(next(_ids), engine.name, prompt, max_tokens))
    # nothing half-done: check the deadline with the largest answer before running
    words = len(prompt.split())
    mission.submit(
        station,
        at,
        max(1, round(1.3 * words)),
        max_tokens,
        len(query),
        len(query) + 8 * max_tokens,
        policy,
        deadline_s,
        commit=False,
    )
    node = SatelliteNode("onboard", engine, frozenset([engine.name]))
    answer_packet, done = node.handle(query)
    decode(answer_packet)  # the ground parses what came down
    trace = mission.submit(
        station,
        at,
        done.prompt_tokens,
        max(done.completion_tokens, 1),
        len(query),
        len(answer_packet),
        policy,
        deadline_s,
    )
    return Answer(done.text, engine.name, trace, done.total_s, len(query), len(answer_packet))
