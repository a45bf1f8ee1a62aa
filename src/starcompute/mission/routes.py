"""Route providers of the planning core (``mission.planner.Routes``).

* :class:`ContactRoutes`: contact graph routing over the contact plan (``routing.cgr``):
  store-and-forward at contact edges, each message sent in the earliest free gap of a
  contact, bookings reserve those gaps. Exact for the plan it is given.
* :class:`StepRoutes`: routing tables on a time grid (``routing.steps``), for a million
  requests. Approximates: links are taken as they are at each grid step (a message with
  no path waits for the next step with one; a laser link counts as up from the step its
  range allows, so its acquisition time is not waited for); the ways up are the tables'
  ``k_best`` satellites by up + down delay at that step; volume is reserved per tracked
  pass (each way: rate x duration), not as a time slot within it, and the route at a
  step is the tables' one, not searched again around a full pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from starcompute.errors import InputError
from starcompute.links.contact_plan import GroundContacts
from starcompute.mission.planner import Down, Option, Way
from starcompute.routing.cgr import Arrivals, ContactGraph
from starcompute.routing.steps import StepTables

FloatArray = npt.NDArray[np.float64]


@dataclass(slots=True)
class ContactRoutes:
    """Exact store-and-forward over a contact graph (nodes: satellites, then stations)."""

    graph: ContactGraph
    n_sat: int
    n_stations: int
    approximation: str = "none: contact graph routing over the contact plan"

    @property
    def stations(self) -> frozenset[int]:
        return frozenset(range(self.n_sat, self.n_sat + self.n_stations))

    def ways_up(
        self, src: frozenset[int], t_s: float, size_bytes: float, sats: Sequence[int]
    ) -> tuple[Arrivals, list[Way]]:
        """The earliest arrival of the query from ``src`` at ``t_s`` on each of ``sats``
        that it reaches (a way's handle is the search, its route is ``route_to(sat)``)."""
        up = self.graph.search(src, t_s, size_bytes)
        ways = []
        for s in sats:
            arrive = float(up.best_s[s])
            if np.isfinite(arrive):
                ways.append(Way(s, arrive, _hops(up, s, src), up))
        return up, ways

    def arrival_floor_s(self, sat: int, leave_s: float, size_bytes: float) -> float:
        return leave_s  # nothing arrives before it leaves (no tighter bound kept)

    def arrival_floors_s(
        self, sats: list[int], leave_s: list[float], size_bytes: float
    ) -> list[float]:
        return list(leave_s)

    def way_down(self, sat: int, leave_s: float, size_bytes: float) -> Down | None:
        """The earliest-arriving route down to any station (nothing booked)."""
        route = self.graph.to_nearest(sat, leave_s, size_bytes, self.stations)
        if route is None:
            return None
        dst = route.hops[-1].dst
        return Down(
            route.hops[0].depart_s, route.arrival_s, dst - self.n_sat, len(route.hops), route
        )

    def book(self, option: Option, query_bytes: float, answer_bytes: float) -> None:
        up = option.up.handle
        route = up.route_to(option.sat) if isinstance(up, Arrivals) else None
        if route is not None:
            self.graph.book(route, query_bytes)
        self.graph.book(option.down.handle, answer_bytes)


def _hops(up: Arrivals, sat: int, src: frozenset[int]) -> int:
    hops, node = 0, sat
    while node not in src:
        node = up.via[node].src
        hops += 1
    return hops


@dataclass(slots=True)
class StepRoutes:
    """Ways up and down from the per-step tables, volume reserved per tracked pass."""

    tables: StepTables
    passes: GroundContacts  # the tracked passes the tables were built on
    s_up: float  # seconds per byte on the first hop up (8 / uplink rate)
    s_down: float  # on the last hop down
    s_isl: float  # on each laser hop
    approximation: str = ""
    room_up: list[float] = field(init=False)  # bytes each pass can still carry up
    room_down: list[float] = field(init=False)
    capacity_up: FloatArray = field(init=False)
    capacity_down: FloatArray = field(init=False)
    later_arrival_s: FloatArray = field(init=False)  # (T, N): leaving after step k
    step_s: float = field(init=False)
    n_steps: int = field(init=False)
    down_pass: npt.NDArray[np.int32] = field(init=False)  # the tables', required here
    best_pass: npt.NDArray[np.int32] = field(init=False)

    def __post_init__(self) -> None:
        tb, p = self.tables, self.passes
        self.step_s, self.n_steps = tb.step_s, tb.n_steps
        if tb.down_pass is None or tb.best_pass is None:
            raise InputError("step routes need tables with their passes (attach_passes)")
        self.down_pass, self.best_pass = tb.down_pass, tb.best_pass
        self.capacity_up = p.capacity_bytes(up=True)
        self.capacity_down = p.capacity_bytes()
        self.room_up = self.capacity_up.tolist()
        self.room_down = self.capacity_down.tolist()
        arrive = np.arange(tb.n_steps)[:, None] * tb.step_s + tb.down_delay_s
        later = np.minimum.accumulate(arrive[::-1], axis=0)[::-1]
        self.later_arrival_s = np.vstack([later[1:], np.full((1, later.shape[1]), np.inf)])
        self.approximation = (
            f"routing tables on a {tb.step_s:g} s grid (links as at each step, laser "
            "acquisition not waited for); volume reserved per pass, not per time slot"
        )

    def ways_up(
        self,
        src: int,
        model: int,
        t_s: float,
        size_bytes: float,
        usable: Callable[[int, float], bool] | None = None,
    ) -> tuple[float, list[Way]] | None:
        """(departure, ways) at the first step at or after ``t_s`` with a way up from
        source ``src`` (a station, or ``tables.any_source``) to a satellite holding
        ``model`` whose uplink pass has room for ``size_bytes`` and that ``usable(sat,
        departure)`` allows; None if there is none in the tables."""
        tb = self.tables
        k, room = int(t_s // tb.step_s), self.room_up
        while 0 <= k < tb.n_steps:
            k = int(tb.next_up_step[k, src, model])
            if k < 0:
                return None
            depart = max(t_s, k * tb.step_s)
            cols = (tb.best_sat, tb.best_up_s, tb.best_hops, self.best_pass)
            sats, ups, hops, pids = (c[k, src, model].tolist() for c in cols)
            ways = [
                Way(s, depart + u + size_bytes * (self.s_up + (h - 1) * self.s_isl), h, p)
                for s, u, h, p in zip(sats, ups, hops, pids, strict=True)
                if s >= 0 and room[p] >= size_bytes and (usable is None or usable(s, depart))
            ]
            if ways:
                return depart, ways
            k += 1
        return None

    def arrival_floor_s(self, sat: int, leave_s: float, size_bytes: float) -> float:
        """The earliest arrival over the tables' ways down from ``leave_s`` on, plus the
        transmission over one ground hop, less a nanosecond against rounding."""
        k = int(leave_s // self.step_s)
        if k >= self.n_steps:
            return np.inf
        now = leave_s + float(self.tables.down_delay_s[k, sat])
        return min(now, float(self.later_arrival_s[k, sat])) + size_bytes * self.s_down - 1e-9

    def arrival_floors_s(
        self, sats: list[int], leave_s: list[float], size_bytes: float
    ) -> list[float]:
        """``arrival_floor_s`` for many satellites at once (numpy)."""
        leave = np.asarray(leave_s, dtype=np.float64)
        sat = np.asarray(sats, dtype=np.int64)
        k = (leave // self.step_s).astype(np.int64)
        beyond = k >= self.n_steps
        k = np.minimum(k, self.n_steps - 1)
        floor = np.minimum(leave + self.tables.down_delay_s[k, sat], self.later_arrival_s[k, sat])
        floor = floor + (size_bytes * self.s_down - 1e-9)
        return np.where(beyond, np.inf, floor).tolist()  # type: ignore[no-any-return]

    def way_down(self, sat: int, leave_s: float, size_bytes: float) -> Down | None:
        """The first way down at or after ``leave_s`` whose pass has room."""
        tb = self.tables
        k = int(leave_s // self.step_s)
        if k >= self.n_steps:
            return None
        k = int(tb.next_down_step[k, sat])
        while k >= 0:
            pid = int(self.down_pass[k, sat])
            if self.room_down[pid] >= size_bytes:
                depart = max(leave_s, k * tb.step_s)
                hops = int(tb.down_hops[k, sat])
                tx = size_bytes * (self.s_down + (hops - 1) * self.s_isl)
                delivered = depart + float(tb.down_delay_s[k, sat]) + tx
                return Down(depart, delivered, int(tb.down_station[k, sat]), hops, pid)
            k = int(tb.next_down_step[k + 1, sat]) if k + 1 < self.n_steps else -1
        return None

    def book(self, option: Option, query_bytes: float, answer_bytes: float) -> None:
        if option.up.handle >= 0:
            self.room_up[option.up.handle] -= query_bytes
        self.room_down[option.down.handle] -= answer_bytes

    def release_down(self, option: Option, answer_bytes: float) -> None:
        """Give back the answer's reservation (it will not be sent)."""
        self.room_down[option.down.handle] += answer_bytes

    def reserved(self) -> tuple[FloatArray, FloatArray]:
        """Bytes reserved on each pass, up and down."""
        up = self.capacity_up - np.asarray(self.room_up, dtype=np.float64)
        return up, self.capacity_down - np.asarray(self.room_down, dtype=np.float64)
