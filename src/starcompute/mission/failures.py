"""Failures mission control plans around: a satellite lost (permanently) or dark for a
while (battery depleted), a ground station out, a laser or ground link down.

An outage blocks every contact of the failed node or link over its interval (a
reservation no bundle can use, so the bookings already made stay as they are) and takes
a failed satellite out of serving. :meth:`Outage.hits` says whether a planned trip needs
what failed while it still needs it: a link while a leg is on it, a station while a leg
touches it, a satellite while it holds the query or the answer (from the first byte in to
the last byte out, inference included). Such a trip is planned again from the ground,
which keeps every query until its answer is delivered.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from starcompute.errors import InputError
from starcompute.times import format_utc


class OutageKind(StrEnum):
    """What fails: declared once for the CLI, the scenario schema and the API."""

    SATELLITE = "satellite"
    STATION = "station"
    LINK = "link"


KINDS = tuple(OutageKind)
LINK_SEP = "~"


@dataclass(frozen=True, slots=True)
class Leg:
    """One hop of a planned trip (UTC)."""

    src: str
    dst: str
    depart: np.datetime64
    arrive: np.datetime64


@dataclass(frozen=True, slots=True)
class Outage:
    kind: OutageKind | str  # an OutageKind (its text accepted)
    target: str  # a name, or "A~B" for a link
    start: np.datetime64
    end: np.datetime64 | None = None  # None: permanent (a lost satellite)
    cause: str = "outage"  # lost | battery | outage | ...

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"outage kind {self.kind!r} is unknown: choose {', '.join(KINDS)}")
        object.__setattr__(self, "kind", OutageKind(self.kind))
        if (LINK_SEP in self.target) != (self.kind == OutageKind.LINK):
            raise InputError(f"a link is named A{LINK_SEP}B; got {self.kind} {self.target!r}")
        if self.end is not None and not self.end > self.start:
            raise InputError(
                f"outage of {self.target}: end {format_utc(self.end)} is not after start"
            )

    @property
    def nodes(self) -> tuple[str, ...]:
        return (
            tuple(self.target.split(LINK_SEP)) if self.kind == OutageKind.LINK else (self.target,)
        )

    def active(self, t: np.datetime64) -> bool:
        return bool(self.start <= t and (self.end is None or t < self.end))

    def _overlaps(self, a: np.datetime64, b: np.datetime64) -> bool:
        return bool(b >= self.start and (self.end is None or a < self.end))

    def hits(self, legs: list[Leg]) -> bool:
        """Does a trip (its legs) need what failed while it is out?"""
        if self.kind == OutageKind.LINK:
            pair = set(self.nodes)
            return any({g.src, g.dst} == pair and self._overlaps(g.depart, g.arrive) for g in legs)
        if self.kind == OutageKind.STATION:
            return any(
                self.target in (g.src, g.dst) and self._overlaps(g.depart, g.arrive) for g in legs
            )
        touching = [g for g in legs if self.target in (g.src, g.dst)]
        if not touching:
            return False
        held_from = min(g.depart for g in touching)  # first byte in
        held_to = max(g.arrive for g in touching)  # last byte out (inference in between)
        return self._overlaps(held_from, held_to)

    def to_dict(self) -> dict[str, str | None]:
        return {
            "kind": self.kind,
            "target": self.target,
            "start": str(format_utc(self.start)),
            "end": None if self.end is None else str(format_utc(self.end)),
            "cause": self.cause,
        }

    @classmethod
    def lasting(
        cls, kind: str, target: str, start: np.datetime64, minutes: float | None, cause: str
    ) -> Outage:
        """From ``start`` for ``minutes`` (None: for good)."""
        if minutes is not None and not (np.isfinite(minutes) and minutes > 0):
            raise InputError(f"an outage lasts > 0 minutes, got {minutes}")
        end = None if minutes is None else start + np.timedelta64(round(minutes * 60e9), "ns")
        return cls(kind, target, start, end, cause)
