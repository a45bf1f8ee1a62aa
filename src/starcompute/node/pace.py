"""When an answer chunk leaves the satellite, and how answers are cut into chunks.

The host computes faster or slower than the satellite would. ``hardware`` pace (the
default) releases each chunk when the performance model predicts the satellite's
hardware would have computed it (for the timing model card), but never before the host
has: ``released = max(computed, started + predicted)``. ``host`` pace releases as
computed. Both times travel with the chunk, so the trace reports both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starcompute.compute.engine import Completion, TokenLogprob
from starcompute.compute.perf import PerformanceModel
from starcompute.compute.streams import Piece
from starcompute.errors import InputError
from starcompute.node.jobs import Chunk, Query

PACES = ("hardware", "host")


@dataclass(frozen=True, slots=True)
class Pace:
    mode: str = "hardware"
    model: PerformanceModel | None = None  # the satellite's hardware x the timing card

    def __post_init__(self) -> None:
        if self.mode not in PACES:
            raise InputError(f"pace must be one of {', '.join(PACES)}, got {self.mode!r}")
        if self.mode == "hardware" and self.model is None:
            raise InputError("hardware pace needs a performance model (hardware and card)")

    def predicted_s(self, prompt_tokens: int, steps: int, batch: int) -> float:
        """Seconds the satellite's hardware takes to the end of decode step ``steps``."""
        if self.model is None or steps < 1:
            return 0.0
        return float(self.model.estimate(max(prompt_tokens, 1), steps, max(batch, 1)).total_s)

    def release_ms(
        self, started_ms: int, computed_ms: int, prompt_tokens: int, steps: int, batch: int
    ) -> tuple[int, int]:
        """(predicted, released) DTN ms of the chunk that closes at ``steps``."""
        predicted = started_ms + round(1000 * self.predicted_s(prompt_tokens, steps, batch))
        released = max(computed_ms, predicted) if self.mode == "hardware" else computed_ms
        return predicted, released


@dataclass(slots=True)
class ChunkBuilder:
    """Cuts one answer into chunks: the first decode step alone (the user sees the answer
    begin one step after the prompt is read, as streaming servers flush the first token),
    then ``query.chunk_tokens`` steps each, then the final chunk."""

    query: Query
    satellite: str
    pace: Pace
    received_ms: int
    started_ms: int
    prompt_tokens: int
    batch: int = 1
    skip_below: int = 0  # chunks already sent before a restart are not made again
    steps: int = 0
    seq: int = 0
    _text: list[str] = field(default_factory=list)
    _logprobs: list[TokenLogprob] = field(default_factory=list)
    _prompt_logprobs: list[TokenLogprob] = field(default_factory=list)

    def step(self, piece: str, now_ms: int) -> Chunk | None:
        """One decode step's piece; a chunk when it completes one."""
        self.steps += 1
        self._text.append(piece)
        if isinstance(piece, Piece):
            self._logprobs.extend(piece.logprobs)
            self._prompt_logprobs.extend(piece.prompt_logprobs)
        if (self.steps - 1) % self.query.chunk_tokens:
            return None
        return self._close(now_ms, None)

    def finish(self, done: Completion, now_ms: int) -> Chunk:
        """The last chunk: what is left of the text, the finish reason and counts."""
        return self._close(now_ms, done)

    def _close(self, now_ms: int, done: Completion | None) -> Chunk:
        predicted, released = self.pace.release_ms(
            self.started_ms, now_ms, self.prompt_tokens, max(self.steps, 1), self.batch
        )
        chunk = Chunk(
            query_id=self.query.query_id,
            seq=self.seq,
            text="".join(self._text),
            final=done is not None,
            satellite=self.satellite,
            steps=self.steps,
            received_ms=self.received_ms,
            started_ms=self.started_ms,
            computed_ms=now_ms,
            released_ms=released,
            predicted_ms=predicted,
            finish_reason=done.finish_reason if done else None,
            prompt_tokens=done.prompt_tokens if done else self.prompt_tokens,
            completion_tokens=done.completion_tokens if done else self.steps,
            pace=self.pace.mode,
            logprobs=tuple(self._logprobs),
            prompt_logprobs=tuple(self._prompt_logprobs),
        )
        self.seq += 1
        self._text.clear()
        self._logprobs.clear()
        self._prompt_logprobs.clear()
        return chunk
