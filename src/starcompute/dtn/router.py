"""Routing on board: contact graph routing over the contact plan a node was given.

For a bundle held at time t the next hop is the first hop of the earliest-arrival route
to its destination (any station, for the ground) found by ``routing.cgr`` over the
plan's contacts: store-and-forward, so the hop may start later (the bundle waits).
A node knows no other node's bookings, so it routes on the plan's full capacity (the
planner on the ground books; for kilobyte bundles the two agree).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from starcompute.links.contact_plan import ContactPlan
from starcompute.routing.cgr import ContactGraph, contact_graph


@dataclass(frozen=True, slots=True)
class Hop:
    """Where a bundle goes next: the neighbour and its contact window (plan seconds)."""

    neighbour: int  # plan node index
    start_s: float  # the contact's window
    end_s: float
    depart_s: float  # earliest transmission start on it
    arrival_s: float  # at the destination, along the whole route

    def up_at(self, t_s: float) -> bool:
        return self.start_s <= t_s < self.end_s


@dataclass(slots=True)
class ContactRouter:
    """Earliest-arrival next hops over one contact plan."""

    plan: ContactPlan
    graph: ContactGraph

    @classmethod
    def of(cls, plan: ContactPlan) -> ContactRouter:
        return cls(plan, contact_graph(plan))

    @property
    def n_satellites(self) -> int:
        return len(self.plan.satellites)

    def stations(self) -> frozenset[int]:
        n = self.n_satellites
        return frozenset(range(n, n + len(self.plan.stations)))

    def next_hop(self, me: int, targets: frozenset[int], t_s: float, size_bytes: int) -> Hop | None:
        """The next hop from ``me`` towards the nearest of ``targets`` (None: no route
        within the plan)."""
        if not 0.0 <= t_s < self.plan.duration_s:
            return None
        route = self.graph.to_nearest(me, t_s, size_bytes, targets)
        if route is None:
            return None
        first = route.hops[0]
        contact = self.graph.contacts[first.contact]
        return Hop(first.dst, contact.start_s, contact.end_s, first.depart_s, route.arrival_s)

    def neighbours_up(self, me: int, t_s: float) -> list[int]:
        """Nodes ``me`` has a contact with at ``t_s``."""
        return sorted(
            {c.dst for c in self.graph.contacts if c.src == me and c.start_s <= t_s < c.end_s}
        )

    def at_s(self, when: np.datetime64) -> float:
        """Plan seconds of an instant."""
        from starcompute.times import offsets_s

        return float(offsets_s(when, self.plan.start))
