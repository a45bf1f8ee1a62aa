"""Mission control: where a query runs and how it travels, and when it is delivered.

For a query submitted at a ground station at time t, mission control chooses the serving
satellite by a policy, routes the query up over the contact plan (store-and-forward:
it may wait for a pass, and relay over laser links), queues it on the satellite, predicts
the inference time with the performance model of that satellite's hardware, and routes
the answer down to whichever ground station delivers it first. Every second of the
total is attributed to one part: waiting for contacts, uplink, laser hops, queue,
inference, downlink; the parts add up to delivered - submitted exactly.

Policies:
* ``nearest``: the satellite of the first uplink contact serves;
* ``earliest-completion`` (default): the inference satellite that minimises the
  predicted delivery time;
* ``energy-aware``: like earliest-completion among satellites in sunlight when the
  inference would start with charge to spare (20 % of capacity above the floor),
  falling back to all admitted satellites if none can meet the deadline.

Queue and batcher: each satellite serves batch slots (up to ``max_batch`` queries); a
query that reaches a busy satellite joins the next slot if it fits, else opens a new one
after the last. A slot lasts the predicted time of a full batch, so joiners never move
deliveries already planned (on memory-bound accelerators a full batch costs little more
than one query).

Admission (every policy): a satellite serves only if its battery can pay for the
inference above its depth-of-discharge floor (or the Sun pays) and its radiator is at
least 5 K below its maximum temperature, per the power model run over the plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from starcompute.compute.cards import load_card
from starcompute.compute.perf import ComputeTarget, PerformanceModel
from starcompute.errors import DeadlineError, InputError, StarcomputeError
from starcompute.ground.stations import GroundStation
from starcompute.links.antennas import tracked_plan
from starcompute.links.config import IslConfig
from starcompute.links.contact_plan import ContactPlan
from starcompute.links.contacts import contact_plan
from starcompute.mission.failures import Leg, Outage, OutageKind
from starcompute.mission.health import SPARE_CHARGE, Health, profile
from starcompute.mission.planner import Core, Option, Request, Way
from starcompute.mission.policy import DEFAULT_POLICY, get_policy
from starcompute.mission.queues import SatelliteQueue
from starcompute.mission.routes import ContactRoutes
from starcompute.orbits.constellation import Constellation
from starcompute.orbits.eclipse import sunlit_fraction
from starcompute.orbits.propagate import Ephemeris, propagate
from starcompute.orbits.sun import sun_position_teme_km
from starcompute.routing.cgr import Arrivals, BundleRoute, ContactGraph, contact_graph
from starcompute.routing.network import Network, lookup_node
from starcompute.routing.query import geometric_range_fn
from starcompute.times import format_utc, from_offsets, offsets_s, time_grid

PARTS = ("wait_for_contact", "uplink", "isl", "model_upload", "queue", "inference", "downlink")


@dataclass(slots=True)
class Trace:
    """Where a query went and where its time went (seconds; times UTC)."""

    submitted: np.datetime64
    delivered: np.datetime64
    uplink_station: str
    serving_satellite: str
    downlink_station: str
    path_up: list[str]
    path_down: list[str]
    timings_s: dict[str, float]
    policy: str
    uplink_at: np.datetime64  # when the query left the ground
    inference_start: np.datetime64 | None = None  # when the satellite starts on it
    legs: list[Leg] = field(default_factory=list)  # every hop, up and down
    replans: int = 0  # times a failure made mission control plan it again
    observed: dict[str, Any] | None = None  # what happened: chunk times, pace, link
    timing_card: str = ""  # the model card whose predicted time is the inference's

    @property
    def total_s(self) -> float:
        return float(offsets_s(self.delivered, self.submitted))

    def hops(self) -> list[dict[str, str]]:
        """Every planned hop, up and down, with its departure and arrival."""
        return [
            {
                "src": g.src,
                "dst": g.dst,
                "depart": str(format_utc(g.depart)),
                "arrive": str(format_utc(g.arrive)),
            }
            for g in self.legs
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "uplink_station": self.uplink_station,
            "serving_satellite": self.serving_satellite,
            "downlink_station": self.downlink_station,
            "path_up": self.path_up,
            "path_down": self.path_down,
            "hops": self.hops(),
            "policy": self.policy,
            "timing_card": self.timing_card,
            "timings_s": {
                **{k: round(v, 6) for k, v in self.timings_s.items()},
                "total": round(self.total_s, 6),
            },
            "uplink_at": format_utc(self.uplink_at),
            "inference_start": format_utc(self.inference_start)
            if self.inference_start is not None
            else None,
            "submitted": format_utc(self.submitted),
            "delivered": format_utc(self.delivered),
            "replans": self.replans,
            **({"observed": self.observed} if self.observed is not None else {}),
        }


@dataclass(slots=True)
class Mission:
    """A constellation, its ground network and contact plan over a horizon."""

    const: Constellation
    stations: list[GroundStation]
    plan: ContactPlan
    eph: Ephemeris
    graph: ContactGraph
    timing_card: str
    quant: str = "int8"
    queues: dict[int, SatelliteQueue] = field(default_factory=dict)  # per satellite
    max_batch: int = 8
    holders: frozenset[int] | None = None  # satellites holding the model (None: all)
    _model_on_board_s: dict[int, float] = field(default_factory=dict)  # uploads planned
    health: Health | None = None  # battery and temperature over the plan (admission)
    outages: list[Outage] = field(default_factory=list)
    _down: dict[int, list[tuple[float, float]]] = field(default_factory=dict)  # sat: [(a, b)]
    antenna: np.ndarray | None = None  # per ground contact: the antenna tracking it (finite)

    @classmethod
    def build(
        cls,
        const: Constellation,
        stations: list[GroundStation],
        start: np.datetime64,
        horizon_s: float,
        timing_card: str = "qwen3-8b",
        *,
        quant: str = "int8",
        plan: ContactPlan | None = None,
        handover_s: float | None = None,
    ) -> Mission:
        """``plan``: the contact plan to use (default: computed for the span), e.g. the
        one the testbed's nodes were given, so planner and nodes route on the same.
        ``handover_s``: plan on a finite ground segment, only the passes the stations'
        antennas track with that handover between passes (None: every visible pass)."""
        load_card(timing_card)  # fail early on an unknown card
        if plan is None:
            plan = contact_plan(const, stations, start, horizon_s, isl=IslConfig.default())
        antenna = None
        if handover_s is not None:
            plan, antenna = tracked_plan(plan, stations, handover_s)
        grid = time_grid(start, np.ceil(horizon_s / 60.0) * 60.0, 60.0)
        eph = propagate(const, grid)
        net = Network(const, stations)
        graph = contact_graph(plan, range_fn=geometric_range_fn(net, eph))
        health = Health.simulate(const, start, horizon_s)
        return cls(
            const, stations, plan, eph, graph, timing_card, quant, health=health, antenna=antenna
        )

    @property
    def n_sat(self) -> int:
        return len(self.const)

    def names(self) -> list[str]:
        return self.plan.satellites + self.plan.stations

    def inference_s(
        self, sat: int, prompt_tokens: int, output_tokens: int, batch: int = 1
    ) -> float:
        target = ComputeTarget.from_profile(profile(self.const.hardware[sat]))
        model = PerformanceModel(load_card(self.timing_card), target, self.quant)
        return model.estimate(prompt_tokens, output_tokens, batch).total_s

    def queue(self, sat: int) -> SatelliteQueue:
        """The batch slots of ``sat`` (created on first use)."""
        if sat not in self.queues:
            self.queues[sat] = SatelliteQueue(self.max_batch)
        return self.queues[sat]

    def submit(
        self,
        station: str | None,
        at: np.datetime64,
        prompt_tokens: int,
        output_tokens: int,
        query_bytes: int,
        answer_bytes: int,
        *,
        policy: str = DEFAULT_POLICY,
        deadline_s: float = 3600.0,
        commit: bool = True,
        only: str | None = None,
    ) -> Trace:
        """Plan one query; with ``commit`` its link time and queue slot are booked.

        ``station`` None: the ground network hands the query to whichever station gets it
        up first (terrestrial backhaul taken as instantaneous). ``only``: the satellite
        that must serve it (e.g. the one that already ran it)."""
        chosen = get_policy(policy)
        if not deadline_s > 0:
            raise InputError(f"deadline must be > 0 s, got {deadline_s}")
        src = self._sources(station)
        t0 = float(offsets_s(at, self.plan.start))
        if not 0.0 <= t0 < self.plan.duration_s:
            raise InputError(
                f"{format_utc(at)} is outside the mission's contact plan "
                f"({format_utc(self.plan.start)} .. {format_utc(self.plan.end)})"
            )
        req = Request(
            t0, prompt_tokens, output_tokens, float(query_bytes), float(answer_bytes),
            self._full_batch_s(prompt_tokens, output_tokens),
        )  # fmt: skip
        pick = None if only is None else frozenset([self.const.index(only)])
        best, _ = self._core().choose(
            req, chosen.narrow(self._ways(src, t0, query_bytes, pick)), chosen, deadline_s,
            self.is_down,
        )  # fmt: skip
        if best is None:
            raise DeadlineError(deadline_s, None)
        if best.delivered_s - t0 > deadline_s:
            raise DeadlineError(deadline_s, from_offsets(self.plan.start, [best.delivered_s])[0])
        if commit:
            self._core().book(best, req)
            if self.holders is not None and best.sat not in self.holders:
                self.holders = self.holders | {best.sat}  # the upload happened
        return self._trace(at, t0, best, policy)

    def fail(self, outage: Outage) -> None:
        """Plan around ``outage`` from now on: its contacts are blocked over its interval
        (bookings made stay), a failed satellite serves nothing while it is out."""
        names = self.names()
        nodes = [lookup_node(names, n) for n in outage.nodes]
        kinds = {
            OutageKind.SATELLITE: lambda n: n < self.n_sat,
            OutageKind.STATION: lambda n: n >= self.n_sat,
        }
        if outage.kind in kinds and not kinds[OutageKind(outage.kind)](nodes[0]):
            raise InputError(f"{outage.target!r} is not a {outage.kind}")
        a = float(offsets_s(outage.start, self.plan.start))
        b = np.inf if outage.end is None else float(offsets_s(outage.end, self.plan.start))
        link = set(nodes)
        for c in self.graph.contacts:
            touches = (
                {c.src, c.dst} == link
                if outage.kind == OutageKind.LINK
                else nodes[0] in (c.src, c.dst)
            )
            lo, hi = max(a, c.start_s), min(b, c.end_s)
            if touches and hi > lo:
                c.reserve(lo, hi - lo)
        if outage.kind == OutageKind.SATELLITE:
            self._down.setdefault(nodes[0], []).append((a, b))
        self.outages.append(outage)

    def is_down(self, sat: int, a_s: float, b_s: float) -> bool:
        """Is ``sat`` out at any time in [a_s, b_s]?"""
        return any(lo <= b_s and a_s < hi for lo, hi in self._down.get(sat, ()))

    def _sources(self, station: str | None) -> frozenset[int]:
        if station is None:
            return frozenset(range(self.n_sat, self.n_sat + len(self.stations)))
        node = lookup_node(self.names(), station)
        if node < self.n_sat:
            raise InputError(f"{station!r} is a satellite: queries start at a ground station")
        return frozenset([node])

    def _core(self) -> Core:
        """The planning core on this mission's contact graph, queues and admission."""
        hw = list(dict.fromkeys(self.const.hardware))
        return Core(
            ContactRoutes(self.graph, self.n_sat, len(self.stations)),
            self.queue,
            [hw.index(h) for h in self.const.hardware],
            self.admits,
            lambda o: (
                self._sunlit(o.sat, o.slot.start_s)
                and self.admits(o.sat, o.slot.start_s, o.slot.inference_s, SPARE_CHARGE)
            ),
            self.plan.duration_s,
            load=None if self.health is None else self.health.draw,
        )

    def _full_batch_s(self, prompt_tokens: int, output_tokens: int) -> list[float]:
        """A full batch of this size on each hardware profile (in ``_core``'s order)."""
        card = load_card(self.timing_card)
        return [
            PerformanceModel(card, ComputeTarget.from_profile(profile(h)), self.quant)
            .estimate(prompt_tokens, output_tokens, self.max_batch)
            .total_s
            for h in dict.fromkeys(self.const.hardware)
        ]

    def _ways(
        self, src: frozenset[int], t0: float, query_bytes: int, only: frozenset[int] | None
    ) -> list[Way]:
        """The inference satellites the query reaches, each ready once the model is on
        board (the handle: the uplink search)."""
        sats = [
            s
            for s in range(self.n_sat)
            if self.const.roles[s] == "inference" and (only is None or s in only)
        ]
        _, reached = ContactRoutes(self.graph, self.n_sat, len(self.stations)).ways_up(
            src, t0, query_bytes, sats
        )
        ways = []
        for way in reached:
            ready = self.model_ready_s(way.sat, way.ready_s)
            if ready is not None:
                ways.append(way._replace(ready_s=max(way.ready_s, ready)))
        return ways

    def uplink(self, sat: int, t_s: float, size_bytes: int) -> float | None:
        """When ``size_bytes`` sent from any station at ``t_s`` (plan seconds) reach
        ``sat`` by the earliest route up (nothing booked); None if no route in the plan."""
        if not 0.0 <= t_s < self.plan.duration_s:
            return None
        arrive = float(self.graph.search(self._sources(None), t_s, size_bytes).best_s[sat])
        return arrive if np.isfinite(arrive) else None

    def downlink(self, sat: int, t_s: float, size_bytes: int) -> tuple[str, float] | None:
        """(station, arrival in plan seconds) of ``size_bytes`` leaving ``sat`` at ``t_s``
        by the earliest route down (nothing booked); None if no route in the plan."""
        if not 0.0 <= t_s < self.plan.duration_s:
            return None
        stations = frozenset(range(self.n_sat, self.n_sat + len(self.stations)))
        route = self.graph.to_nearest(sat, t_s, size_bytes, stations)
        if route is None:
            return None
        return self.names()[route.hops[-1].dst], route.arrival_s

    def admits(self, sat: int, start_s: float, inference_s: float, spare: float = 0.0) -> bool:
        """Power and thermal admission (see ``mission.health``); always without health."""
        if self.health is None:
            return True
        sunlit = self._sunlit(sat, start_s)
        return self.health.admits(sat, start_s, inference_s, spare, sunlit)

    def model_bytes(self) -> float:
        return load_card(self.timing_card).weight_bytes(self.quant)

    def model_ready_s(self, sat: int, not_before_s: float) -> float | None:
        """When ``sat`` holds the model: now if preloaded, else after uploading its weights
        from the ground as one store-and-forward bundle (None if no pass can carry it)."""
        if self.holders is None or sat in self.holders:
            return 0.0
        if sat not in self._model_on_board_s:
            stations = frozenset(range(self.n_sat, self.n_sat + len(self.stations)))
            up = self.graph.search(
                stations,
                min(not_before_s, self.plan.duration_s),
                self.model_bytes(),
                frozenset([sat]),
            )
            arrival = float(up.best_s[sat])
            self._model_on_board_s[sat] = arrival
        arrival = self._model_on_board_s[sat]
        return arrival if np.isfinite(arrival) else None

    def _sunlit(self, sat: int, t_s: float) -> bool:
        r, _ = self.eph.state_at(np.array([sat]), np.array([t_s]))
        sun = sun_position_teme_km(from_offsets(self.plan.start, [t_s]))
        return bool(sunlit_fraction(r, sun)[0] > 0.5)

    def _trace(self, at: np.datetime64, t0: float, best: Option, policy: str) -> Trace:
        names = self.names()
        search: Arrivals = best.up.handle
        up, down, sat = search.route_to(best.sat), best.down.handle, best.sat
        if up is None or not isinstance(down, BundleRoute):  # the core's ways never are
            raise StarcomputeError("a planned trip lost its route up or down")
        parts = dict.fromkeys(PARTS, 0.0)
        parts["model_upload"] = best.ready_s - float(search.best_s[sat])
        parts["queue"] = best.slot.start_s - best.ready_s
        parts["inference"] = best.slot.inference_s
        ready = t0
        for route, start_ready in ((up, t0), (down, None)):
            ready = start_ready if start_ready is not None else best.end_s
            for hop in route.hops:
                parts["wait_for_contact"] += hop.depart_s - ready
                kind = (
                    "uplink"
                    if hop.src >= self.n_sat
                    else "downlink"
                    if hop.dst >= self.n_sat
                    else "isl"
                )
                parts[kind] += hop.arrive_s - hop.depart_s
                ready = hop.arrive_s
        delivered = from_offsets(self.plan.start, [ready])[0]
        return Trace(
            submitted=at,
            delivered=delivered,
            uplink_station=names[up.hops[0].src],
            serving_satellite=names[sat],
            downlink_station=names[down.hops[-1].dst],
            path_up=[names[n] for n in up.nodes()],
            path_down=[names[n] for n in down.nodes()],
            timings_s=parts,
            policy=policy,
            timing_card=self.timing_card,
            uplink_at=from_offsets(self.plan.start, [up.hops[0].depart_s])[0],
            inference_start=from_offsets(self.plan.start, [best.slot.start_s])[0],
            legs=[
                Leg(
                    names[h.src],
                    names[h.dst],
                    *from_offsets(self.plan.start, [h.depart_s, h.arrive_s]),
                )
                for h in (*up.hops, *down.hops)
            ],
        )
