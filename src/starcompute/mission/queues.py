"""The serving queue of one satellite: batch slots, as mission control books them.

A slot opens when the satellite is free and lasts the performance model's time for a
full batch of its opener's size, so later queries that fit (no longer prompt, no more
output) can join it, up to ``max_batch``, without moving anyone's delivery (on
memory-bound accelerators a full batch costs little more than one query). Slots open
one after the other, so their starts and ends are both increasing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class Batch:
    """One slot: when it starts, how long it runs, the largest query it can take."""

    start_s: float
    inference_s: float
    prompt_tokens: int
    output_tokens: int
    size: int = 1
    tag: int = -1  # the caller's label (e.g. a row in its batch table)
    model: int = 0  # which model it runs: only queries for the same model join

    @property
    def end_s(self) -> float:
        return self.start_s + self.inference_s


@dataclass(slots=True)
class Slot:
    """Where a query would run: start, duration, and the slot it joins (None: a new one)."""

    start_s: float
    inference_s: float
    joins: Batch | None


@dataclass(slots=True)
class SatelliteQueue:
    """Batch slots of one satellite, in time order."""

    max_batch: int = 8
    busy_until_s: float = 0.0  # blocked by other work until then
    batches: deque[Batch] = field(default_factory=deque)

    def slot(
        self,
        ready_s: float,
        prompt_tokens: int,
        output_tokens: int,
        full_batch_s: float,
        model: int = 0,
    ) -> Slot:
        """The earliest slot for a query for ``model`` ready at ``ready_s``;
        ``full_batch_s`` is the duration of a full batch of this query's size (used if it
        opens a slot)."""
        for b in self.batches:
            if (
                b.start_s >= ready_s
                and b.size < self.max_batch
                and b.model == model
                and prompt_tokens <= b.prompt_tokens
                and output_tokens <= b.output_tokens
            ):
                return Slot(b.start_s, b.inference_s, b)
        free = max(ready_s, self.busy_until_s)
        if self.batches:
            free = max(free, self.batches[-1].end_s)
        return Slot(free, full_batch_s, None)

    def book(self, slot: Slot, prompt_tokens: int, output_tokens: int, model: int = 0) -> Batch:
        """Take the slot; returns the batch the query runs in."""
        if slot.joins is not None:
            slot.joins.size += 1
            return slot.joins
        batch = Batch(slot.start_s, slot.inference_s, prompt_tokens, output_tokens, model=model)
        self.batches.append(batch)
        return batch

    def retire_before(self, t_s: float) -> None:
        """Drop slots that start before ``t_s`` (keeping the last, which says when the
        satellite is free): no query ready at or after ``t_s`` can join them. Keeps the
        scan short when time only moves forward."""
        while len(self.batches) > 1 and self.batches[0].start_s < t_s:
            self.batches.popleft()
