"""Contact graph routing: earliest arrival over future contacts (store-and-forward).

A bundle of ``size_bytes`` leaves a node at time t. It may wait on any node for a later
contact. On a contact (from, to, start, end, rate) it is transmitted in the earliest
gap of at least size/rate between the reservations already made on that contact, and
arrives after the propagation delay (range / c) plus the per-hop processing delay.
Booking a route reserves those transmission intervals, so two large bundles never both
assume the same capacity (contact volume = rate x duration is honoured exactly).

The search is a time-dependent Dijkstra over nodes; it is exact because arriving
later at a node never allows an earlier departure (the FIFO property of contacts with
reservations).
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from starcompute.errors import InputError
from starcompute.links.contact_plan import ContactPlan
from starcompute.orbits.constants import SPEED_OF_LIGHT_KM_S

RangeFn = Callable[[int, int, float], float]  # (from node, to node, t_s) -> km


@dataclass(slots=True)
class Contact:
    src: int
    dst: int
    start_s: float
    end_s: float
    rate_bps: float
    range_km: float  # used when no range function is given
    busy: list[tuple[float, float]] = field(default_factory=list)  # sorted reservations

    def volume_bytes(self) -> float:
        return self.rate_bps * (self.end_s - self.start_s) / 8.0

    def residual_bytes(self) -> float:
        used = sum(b - a for a, b in self.busy)
        return self.rate_bps * (self.end_s - self.start_s - used) / 8.0

    def earliest_slot(self, ready_s: float, tx_s: float) -> float | None:
        """Start of the first free interval of length ``tx_s`` at or after ``ready_s``."""
        t = max(ready_s, self.start_s)
        for a, b in self.busy:
            if t + tx_s <= a:
                break
            t = max(t, b)
        return t if t + tx_s <= self.end_s + 1e-9 else None

    def reserve(self, start_s: float, tx_s: float) -> None:
        bisect.insort(self.busy, (start_s, start_s + tx_s))


@dataclass(slots=True)
class BundleHop:
    src: int
    dst: int
    depart_s: float  # transmission start
    arrive_s: float  # last byte received and processed
    range_km: float
    contact: int


@dataclass(slots=True)
class BundleRoute:
    hops: list[BundleHop]

    @property
    def arrival_s(self) -> float:
        return self.hops[-1].arrive_s if self.hops else float("nan")

    def nodes(self) -> list[int]:
        return [self.hops[0].src] + [h.dst for h in self.hops] if self.hops else []


@dataclass(slots=True)
class ContactGraph:
    """Contacts by source node, with the reservations made so far."""

    n_nodes: int
    contacts: list[Contact]
    horizon_s: float
    processing_delay_s: float = 1e-4
    relays: frozenset[int] = frozenset()  # nodes that may not forward (stations w/o relay)
    range_fn: RangeFn | None = None
    _out: list[list[int]] = field(init=False)

    def __post_init__(self) -> None:
        self._out = [[] for _ in range(self.n_nodes)]
        for i, c in enumerate(self.contacts):
            if not (c.end_s >= c.start_s and c.rate_bps > 0):
                raise InputError(f"contact {i} needs end >= start and a positive rate")
            self._out[c.src].append(i)

    def _hop(self, i: int, ready_s: float, size_bytes: float) -> BundleHop | None:
        c = self.contacts[i]
        if c.end_s <= ready_s:
            return None
        tx_s = 8.0 * size_bytes / c.rate_bps
        depart = c.earliest_slot(ready_s, tx_s)
        if depart is None:
            return None
        rng = self.range_fn(c.src, c.dst, depart) if self.range_fn else c.range_km
        arrive = depart + tx_s + rng / SPEED_OF_LIGHT_KM_S + self.processing_delay_s
        return BundleHop(c.src, c.dst, depart, arrive, rng, i)

    def search(
        self,
        src: int | frozenset[int],
        t_s: float,
        size_bytes: float,
        targets: frozenset[int] = frozenset(),
    ) -> Arrivals:
        """Earliest arrival at every node (or until the first of ``targets`` is settled).

        ``src`` may be a set of nodes that all hold the bundle at ``t_s`` (a query that
        the terrestrial network can hand to any ground station)."""
        sources = frozenset([src]) if isinstance(src, int) else src
        if not 0.0 <= t_s <= self.horizon_s:
            raise InputError(
                f"start {t_s:g} s is outside the contact plan (0..{self.horizon_s:g} s)"
            )
        if not size_bytes > 0:
            raise InputError(f"bundle size must be > 0 bytes, got {size_bytes}")
        best = np.full(self.n_nodes, np.inf)
        best[list(sources)] = t_s
        via: dict[int, BundleHop] = {}
        heap = [(t_s, u) for u in sorted(sources)]
        while heap:
            t, u = heapq.heappop(heap)
            if t > best[u]:
                continue
            if u in targets:
                break
            if u not in sources and u in self.relays:
                continue
            for i in self._out[u]:
                hop = self._hop(i, t, size_bytes)
                if hop is not None and hop.arrive_s < best[hop.dst]:
                    best[hop.dst] = hop.arrive_s
                    via[hop.dst] = hop
                    heapq.heappush(heap, (hop.arrive_s, hop.dst))
        return Arrivals(sources, best, via)

    def book(self, route: BundleRoute, size_bytes: float) -> None:
        """Reserve the route's transmission intervals in its contacts."""
        for h in route.hops:
            self.contacts[h.contact].reserve(
                h.depart_s, 8.0 * size_bytes / self.contacts[h.contact].rate_bps
            )

    def to_nearest(
        self, src: int, t_s: float, size_bytes: float, targets: frozenset[int]
    ) -> BundleRoute | None:
        """The route to whichever of ``targets`` the bundle reaches first (nothing
        booked; None if it reaches none within the plan, or is there already)."""
        if not 0.0 <= t_s <= self.horizon_s or not targets or src in targets:
            return None
        found = self.search(src, t_s, max(size_bytes, 1.0), targets)
        reached = [x for x in targets if np.isfinite(found.best_s[x])]
        if not reached:
            return None
        route = found.route_to(min(reached, key=lambda x: float(found.best_s[x])))
        return route if route is not None and route.hops else None

    def earliest_arrival(
        self, src: int, dst: int, t_s: float, size_bytes: float, reserve: bool = True
    ) -> BundleRoute | None:
        """The earliest-arrival route, booked into the contacts when ``reserve``."""
        route = self.search(src, t_s, size_bytes, frozenset([dst])).route_to(dst)
        if route is not None and reserve:
            self.book(route, size_bytes)
        return route


@dataclass(slots=True)
class Arrivals:
    """The result of one search: earliest arrival per node and the hop that achieved it."""

    sources: frozenset[int]
    best_s: npt.NDArray[np.float64]
    via: dict[int, BundleHop]

    def route_to(self, dst: int) -> BundleRoute | None:
        if dst in self.sources or not np.isfinite(self.best_s[dst]):
            return None
        hops, node = [], dst
        while node not in self.sources:
            hops.append(self.via[node])
            node = self.via[node].src
        hops.reverse()
        return BundleRoute(hops)


def contact_graph(
    plan: ContactPlan,
    ground_relays: bool = False,
    processing_delay_s: float = 1e-4,
    range_fn: RangeFn | None = None,
) -> ContactGraph:
    """Directed contacts of a plan: nodes are satellites 0..N-1 then stations N..N+S-1.

    Ground windows give an uplink contact (at the pass's uplink rate, none where it does
    not close) and a downlink contact; laser windows one each way.
    Without ``range_fn`` a ground contact uses its culmination range and a laser contact
    its largest range over the window (conservative).
    """
    n_sat = len(plan.satellites)
    g, isl = plan.ground, plan.isl
    contacts: list[Contact] = []
    for sta, sat, a, b, rate, up_rate, r in zip(
        g.station.tolist(),
        g.satellite.tolist(),
        g.aos_s.tolist(),
        g.los_s.tolist(),
        g.rate_bps.tolist(),
        g.up_rate_bps.tolist(),
        g.min_range_km.tolist(),
        strict=True,
    ):
        if up_rate > 0:  # the uplink closes
            contacts.append(Contact(n_sat + sta, sat, a, b, up_rate, r))
        contacts.append(Contact(sat, n_sat + sta, a, b, rate, r))
    for x, y, a, b, rate, r in zip(
        isl.a.tolist(),
        isl.b.tolist(),
        isl.start_s.tolist(),
        isl.end_s.tolist(),
        isl.rate_bps.tolist(),
        isl.max_range_km.tolist(),
        strict=True,
    ):
        contacts.append(Contact(x, y, a, b, rate, r))
        contacts.append(Contact(y, x, a, b, rate, r))
    stations = range(n_sat, n_sat + len(plan.stations))
    return ContactGraph(
        n_nodes=n_sat + len(plan.stations),
        contacts=contacts,
        horizon_s=plan.duration_s,
        processing_delay_s=processing_delay_s,
        relays=frozenset() if ground_relays else frozenset(stations),
        range_fn=range_fn,
    )
