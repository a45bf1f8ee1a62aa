"""How a planned job reaches orbit and its answer comes back: the space segment as the
ground segment sees it.

Two implementations share this shape: the in-process twin (``mission.twin``: the
satellite's job check and one local engine, chunks released on the planned times) and
the testbed (``testbed.ground``: bundles through real stations, the link emulator and a
node process per satellite). Either way the ground receives :class:`Arrival` objects,
each an answer chunk at the orbit time it reached a station.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from starcompute.dtn.bundle import from_dtn_ms
from starcompute.mission.control import Trace
from starcompute.node.jobs import Chunk, Query
from starcompute.times import format_utc


@dataclass(frozen=True, slots=True)
class Arrival:
    """An answer chunk on the ground."""

    chunk: Chunk
    delivered: np.datetime64  # orbit time it reached the station
    station: str
    planned: np.datetime64 | None = None  # what the plan said for it, where there is one

    def to_dict(self) -> dict[str, Any]:
        c = self.chunk
        return {
            "seq": c.seq,
            "steps": c.steps,
            "computed": format_utc(from_dtn_ms(c.computed_ms)),
            "predicted": format_utc(from_dtn_ms(c.predicted_ms)),
            "released": format_utc(from_dtn_ms(c.released_ms)),
            "delivered": format_utc(self.delivered),
            "planned_delivery": None if self.planned is None else format_utc(self.planned),
            "station": self.station,
        }


class SpaceLink(Protocol):
    name: str

    def serve(
        self,
        query: Query,
        trace: Trace,
        model: str,
        cancelled: Callable[[], bool] | None = None,
    ) -> AsyncIterator[Arrival]:
        """Send ``query`` as planned by ``trace``; its answer chunks as they arrive
        (``cancelled()``: nobody waits for it any more)."""
        ...

    def command(
        self,
        satellite: str,
        kind: str | None,
        args: dict[str, Any],
        packet: bytes | None,
        arrives: np.datetime64,
    ) -> dict[str, Any]:
        """An operator's telecommand (``kind``, ``args``) or a raw packet, to a satellite
        that the contact plan reaches at ``arrives`` (now, or its next contact)."""
        ...

    def stats(self) -> dict[str, Any]: ...
