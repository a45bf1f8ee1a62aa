"""The satellite node runtime: it receives a query packet, parses it defensively, runs
the engine (real or simulated) and returns an answer packet."""

from __future__ import annotations

from dataclasses import dataclass, field

from starcompute.compute.engine import Completion, Engine, GenerationRequest, Message
from starcompute.mission.wire import AnswerPacket, QueryPacket, WireStats, decode, encode


@dataclass(slots=True)
class SatelliteNode:
    name: str
    engine: Engine
    models: frozenset[str]  # models this satellite holds
    stats: WireStats = field(default_factory=WireStats)
    served: int = 0

    def handle(self, packet: bytes) -> tuple[bytes, Completion]:
        """Answer one query packet (raises WireError for a corrupt or foreign packet)."""
        query = decode(packet, self.stats)
        if not isinstance(query, QueryPacket):
            raise TypeError("a satellite node answers queries, not answers")
        request = GenerationRequest(
            messages=(Message("user", query.prompt),),
            max_tokens=query.max_tokens,
            temperature=query.temperature,
            top_p=query.top_p,
        )
        done = self.engine.generate([request])[0]
        self.served += 1
        answer = AnswerPacket(query.query_id, done.text, done.completion_tokens, done.finish_reason)
        return encode(answer, self.served), done
