"""The planner's simulator: every request of a scenario through mission control, in order.

Requests are taken in arrival order (a discrete-event run over arrivals; contacts and
links advance on the routing grid). For each query mission control's own pieces decide:
the candidates are the satellites holding the model that the routing tables rank best
by up + down delay from the query's station at that step (``routing.steps``); for each,
the satellite's batch queue (``mission.queues``) gives the slot, the performance model
the inference time, power/thermal admission (``mission.health``) whether it may serve,
and the way down the first step with a path after the inference ends; the policy
(``mission.policy``) picks, and the slot is booked. A query that cannot be delivered
within its deadline or the simulated horizon is rejected (nothing is booked for it).

Failures (the scenario's [[failures]]) are out of the routing tables while they last;
mission control learns of one when it starts. A satellite known to be out is no
candidate; a query whose serving satellite fails while it holds the query (from the
query on board to the answer sent down) is planned again from the ground at that moment,
its latency still counted from its submission (``failover_s``: the time lost), so it ends
delivered or explicitly rejected; an Earth-observation image dies with the satellite that
took it (``satellite-lost``).

Candidates are scanned in order of their up + down delay at submission; one is skipped
as soon as a lower bound (the end of its inference, on an empty queue, then in its
actual slot) cannot beat the best delivery found so far, so the skipping never changes
the choice (``energy-aware`` scans every candidate within the deadline). Deterministic:
the same scenario and seed give the same records.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from starcompute.mission.failures import OutageKind
from starcompute.mission.health import SPARE_CHARGE
from starcompute.mission.policy import Policy, get_policy
from starcompute.mission.queues import SatelliteQueue, Slot
from starcompute.sim.scenario import Scenario
from starcompute.sim.workload import EO, Demand, check_inputs, generate, scenario_regions
from starcompute.sim.world import Failure, Progress, World, build_world, great_circle_km

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DELIVERED, NO_PATH, DEADLINE, HORIZON, SAT_LOST = 0, 1, 2, 3, 4
STATUS = ("delivered", "no-path", "deadline", "horizon", "satellite-lost")
PARTS = (
    "terrestrial_s", "wait_for_contact_s", "up_s", "queue_s", "inference_s", "down_s",
    "failover_s",
)  # fmt: skip


@dataclass(slots=True)
class Records:
    """Per-request outcome (arrays over requests) and the batches that ran."""

    demand: Demand
    status: IntArray
    serving_sat: IntArray  # -1 when rejected
    uplink_station: IntArray  # -1: none (EO job, or rejected)
    downlink_station: IntArray
    up_hops: IntArray
    down_hops: IntArray
    batch: IntArray  # index into the batch arrays, -1 when rejected
    delivered_s: FloatArray  # NaN when rejected
    parts: dict[str, FloatArray]  # seconds per part (sum = delivered - submitted)
    batch_sat: IntArray
    batch_start_s: FloatArray
    batch_duration_s: FloatArray
    batch_size: IntArray
    batch_model: IntArray
    replans: IntArray  # times a failure struck the request and it was planned again


class _Candidate(NamedTuple):
    """A satellite the query reaches at step k (a tuple: millions are made per run)."""

    sat: int
    up_s: float  # uplink delay from the departure
    hops: int

    @property
    def direct(self) -> bool:
        return self.hops == 1


@dataclass(slots=True)
class _Option:
    sat: int
    slot: Slot
    ready_s: float  # query on board
    down_depart_s: float
    down_s: float
    delivered_s: float
    station_down: int
    hops_up: int
    hops_down: int


def simulate_records(scenario: Scenario, progress: Progress | None = None) -> tuple[World, Records]:
    """Build the world, draw the demand and plan every request."""
    check_inputs(scenario)
    world = build_world(scenario, progress)
    rng = np.random.default_rng(int(scenario[""]["seed"]))
    eo_model = _eo_model(scenario)
    eo_sats = np.flatnonzero(world.holders[eo_model]).astype(np.int64)
    if progress is not None:
        progress("demand", 0, 1)
    demand = generate(scenario, eo_sats, rng)
    return world, _Planner(world, demand, progress).run()


def _eo_model(scenario: Scenario) -> int:
    name = scenario["earth_observation"]["model"]
    names = [m["name"] for m in scenario.models]
    return names.index(name) if name else 0


class _Planner:
    def __init__(self, world: World, demand: Demand, progress: Progress | None) -> None:
        self.w, self.d, self.progress = world, demand, progress
        sc = world.scenario
        self.step_s = world.tables.step_s
        self.n_steps = world.tables.n_steps
        self.horizon_s = self.n_steps * self.step_s
        self.down_delay = world.tables.down_delay_s
        self.policy = get_policy(str(sc["scheduler"]["policy"]))
        self.narrows = type(self.policy).narrow is not Policy.narrow
        self.infinite = bool(sc["compute"]["infinite"])
        self.deadline_s = float(sc["workload"]["deadline_s"])
        self.queues = [
            SatelliteQueue(int(sc["scheduler"]["max_batch"])) for _ in range(len(world.const))
        ]
        self.full_batch_s = self._full_batch_times()
        self.source, self.fiber_s = self._sources()
        net = world.net
        self.s_ground = 8.0 / net.ground_rate_bps  # seconds per byte
        self.s_isl = 8.0 / net.isl.rate_bps
        self.hw_of_sat = world.hw_of_sat.tolist()
        self.batches: list[tuple[int, float, float, int]] = []  # sat, start, duration, model
        self.batch_size: list[int] = []
        self.sat_failures: dict[int, list[Failure]] = {}
        for f in world.failures:
            if f.outage.kind == OutageKind.SATELLITE:
                self.sat_failures.setdefault(f.nodes[0], []).append(f)
        self.struck: list[tuple[float, int]] = []  # (when, request) to plan again

    def _full_batch_times(self) -> FloatArray:
        """(requests, hardware) time of a full batch of each request's size."""
        d, w = self.d, self.w
        out = np.zeros((len(d), len(w.hw_names)))
        if self.infinite:
            return out
        batch = int(w.scenario["scheduler"]["max_batch"])
        for m, models in enumerate(w.perf):
            rows = d.model == m
            p = d.prompt_tokens[rows].astype(np.float64)
            o = d.output_tokens[rows].astype(np.float64)
            for h, perf in enumerate(models):
                out[rows, h] = perf.total_s_array(p, o, batch)
        return out

    def _sources(self) -> tuple[IntArray, FloatArray]:
        """Routing source of each region (its nearest station, or ANY) and fibre delay."""
        sc, w = self.w.scenario, self.w
        regions = scenario_regions(sc)
        n = len(regions.names)
        if sc["ground"]["handoff"] == "any":
            return np.full(n, w.tables.any_source), np.zeros(n)
        lat = np.array([s.lat_deg for s in w.stations])
        lon = np.array([s.lon_deg for s in w.stations])
        dist = great_circle_km(
            regions.lat_deg[:, None], regions.lon_deg[:, None], lat[None, :], lon[None, :]
        )
        nearest = np.argmin(dist, axis=1)
        return nearest.astype(np.int64), dist[np.arange(n), nearest] / float(
            sc["ground"]["fiber_km_s"]
        )

    def run(self) -> Records:
        d = self.d
        n = len(d)
        out = _empty_records(d)
        chunk = max(1, n // 100)
        if self.progress is not None:
            self.progress("requests", 0, n)
        for i in range(n):
            self._plan_struck(float(d.t_s[i]), out)
            self._plan(i, out)
            if self.progress is not None and (i + 1) % chunk == 0:
                self.progress("requests", chunk, n)
        self._plan_struck(np.inf, out)
        b = np.array(self.batches, dtype=np.float64).reshape(-1, 4)
        out.batch_sat = b[:, 0].astype(np.int64)
        out.batch_start_s = b[:, 1]
        out.batch_duration_s = b[:, 2]
        out.batch_model = b[:, 3].astype(np.int64)
        out.batch_size = np.array(self.batch_size, dtype=np.int64)
        return out

    def _plan_struck(self, until_s: float, out: Records) -> None:
        """Plan again, in time order, the requests failures struck up to ``until_s``."""
        while self.struck and self.struck[0][0] <= until_s:
            at_s, i = heapq.heappop(self.struck)
            self._plan(i, out, at_s)

    def _candidates(
        self, i: int, t_s: float
    ) -> tuple[float, float, Sequence[tuple[int, float, int]]] | int:
        """(terrestrial s, uplink departure, [(sat, up delay, hops)]) or a rejection code."""
        d, tb = self.d, self.w.tables
        if d.kind[i] == EO:
            return 0.0, t_s, [_Candidate(int(d.satellite[i]), 0.0, 0)]
        region = int(d.region[i])
        fiber = float(self.fiber_s[region])
        t_in = t_s + fiber
        k = int(t_in // self.step_s)
        if k >= tb.n_steps:
            return HORIZON
        src, g = int(self.source[region]), int(d.model[i])
        while True:  # the first step with a candidate not known to be out
            k = int(tb.next_up_step[k, src, g]) if k < tb.n_steps else -1
            if k < 0:
                return NO_PATH
            depart = max(t_in, k * self.step_s)
            sats = tb.best_sat[k, src, g].tolist()
            ups = tb.best_up_s[k, src, g].tolist()
            hops = tb.best_hops[k, src, g].tolist()
            cands = [
                (s, u, h)
                for s, u, h in zip(sats, ups, hops, strict=True)
                if s >= 0 and not self._known_out(s, t_s, depart, depart)
            ]
            if cands:
                break
            k += 1
        if not self.narrows:  # plain tuples on the hot path: most policies keep them all
            return fiber, depart, cands
        return fiber, depart, self.policy.narrow([_Candidate(*c) for c in cands])

    def _plan(self, i: int, out: Records, at_s: float | None = None) -> None:
        """Plan request ``i`` at its arrival (or again at ``at_s``, after a failure)."""
        d = self.d
        submitted = float(d.t_s[i])
        t_s = submitted if at_s is None else at_s
        if d.kind[i] == EO and self._known_out(int(d.satellite[i]), t_s, t_s, t_s):
            out.status[i] = SAT_LOST  # the image was on the satellite that failed
            return
        found = self._candidates(i, t_s)
        if isinstance(found, int):
            out.status[i] = found
            return
        fiber, depart, cands = found
        q_bytes = float(d.query_bytes[i])
        full_row = self.full_batch_s[i].tolist()
        # the policy's bound prunes the scan (for most: the best delivery so far)
        policy = self.policy
        bound = policy.first_bound_s(submitted, self.deadline_s)
        options: list[_Option] = []
        for sat, up_s, hops in cands:
            tx = q_bytes * (self.s_ground + (hops - 1) * self.s_isl) if hops else 0.0
            ready = depart + up_s + tx
            full = full_row[self.hw_of_sat[sat]]
            if ready + full >= bound:  # even an empty queue could not do better
                continue
            option = self._option(i, sat, ready, full, hops, bound, t_s)
            if option is not None:
                options.append(option)
                bound = policy.next_bound_s(bound, option)
        pick = policy.choose(options, submitted, self.deadline_s, self._thrifty)
        if pick is None:
            out.status[i] = NO_PATH if not options else DEADLINE
            return
        if pick.delivered_s - submitted > self.deadline_s:
            out.status[i] = DEADLINE
            return
        self._book(i, pick, out, t_s, fiber, depart)
        out.parts["failover_s"][i] = t_s - submitted
        strike = self._strike(pick.sat, t_s, pick.ready_s, pick.down_depart_s)
        if strike is not None:  # it fails while holding the query: plan again then
            self.batch_size[out.batch[i]] -= 1
            out.replans[i] += 1
            out.status[i], out.serving_sat[i], out.batch[i] = -1, -1, -1
            out.delivered_s[i] = np.nan
            if d.kind[i] == EO:
                out.status[i] = SAT_LOST
            else:
                heapq.heappush(self.struck, (strike, i))

    def _known_out(self, sat: int, now_s: float, a_s: float, b_s: float) -> bool:
        """Is ``sat`` out in [a_s, b_s] by a failure already begun at ``now_s``?"""
        return any(f.start_s <= now_s and f.down(a_s, b_s) for f in self.sat_failures.get(sat, ()))

    def _strike(self, sat: int, now_s: float, a_s: float, b_s: float) -> float | None:
        """When a failure not yet begun at ``now_s`` takes ``sat`` out in [a_s, b_s]."""
        starts = [
            f.start_s
            for f in self.sat_failures.get(sat, ())
            if f.start_s > now_s and f.down(a_s, b_s)
        ]
        return min(starts) if starts else None

    def _option(
        self, i: int, sat: int, ready: float, full: float, hops: int, bound: float, now_s: float
    ) -> _Option | None:
        """Serving on ``sat`` (None: not admitted, known to be out, no way down, or no
        better than bound)."""
        d, tb, h = self.d, self.w.tables, self.w.health
        if self.infinite:
            slot = Slot(ready, 0.0, None)
        else:
            slot = self.queues[sat].slot(
                ready, int(d.prompt_tokens[i]), int(d.output_tokens[i]), full
            )
        end = slot.start_s + slot.inference_s
        if end >= bound or (h is not None and not h.admits(sat, slot.start_s, slot.inference_s)):
            return None
        k = int(end // self.step_s)
        if k >= self.n_steps:
            return None
        k = int(tb.next_down_step[k, sat])
        if k < 0:
            return None
        dep = max(end, k * self.step_s)
        hops_down = int(tb.down_hops[k, sat])
        a_bytes = float(d.answer_bytes[i])
        down = float(self.down_delay[k, sat]) + a_bytes * (
            self.s_ground + (hops_down - 1) * self.s_isl
        )
        delivered = dep + down
        if delivered > self.horizon_s or self._known_out(sat, now_s, ready, dep):
            return None
        return _Option(
            sat, slot, ready, dep, down, delivered, int(tb.down_station[k, sat]), hops, hops_down
        )

    def _thrifty(self, o: _Option) -> bool:
        h = self.w.health
        if h is None:
            return True
        start, infer = o.slot.start_s, o.slot.inference_s
        return h.sunlit_at(o.sat, start) and h.admits(o.sat, start, infer, SPARE_CHARGE)

    def _book(
        self, i: int, o: _Option, out: Records, t_s: float, fiber: float, depart: float
    ) -> None:
        d = self.d
        if self.infinite:
            index = len(self.batches)
            self.batches.append((o.sat, o.slot.start_s, 0.0, int(d.model[i])))
            self.batch_size.append(1)
        else:
            queue = self.queues[o.sat]
            batch = queue.book(o.slot, int(d.prompt_tokens[i]), int(d.output_tokens[i]))
            queue.retire_before(t_s)  # no later query can join a slot that started before now
            if batch.tag >= 0:
                index = batch.tag
                self.batch_size[index] += 1
            else:
                index = batch.tag = len(self.batches)
                self.batches.append((o.sat, batch.start_s, batch.inference_s, int(d.model[i])))
                self.batch_size.append(1)
        end = o.slot.start_s + o.slot.inference_s
        out.status[i] = DELIVERED
        out.serving_sat[i] = o.sat
        up_station = -1
        if d.kind[i] != EO:
            src = int(self.source[int(d.region[i])])
            tb = self.w.tables
            up_station = (
                src
                if src != tb.any_source
                else int(tb.down_station[int(depart // self.step_s), o.sat])
            )
        out.uplink_station[i] = up_station
        out.downlink_station[i] = o.station_down
        out.up_hops[i] = o.hops_up
        out.down_hops[i] = o.hops_down
        out.batch[i] = index
        out.delivered_s[i] = o.delivered_s
        p = out.parts
        p["terrestrial_s"][i] = fiber
        p["wait_for_contact_s"][i] = (depart - t_s - fiber) + (o.down_depart_s - end)
        p["up_s"][i] = o.ready_s - depart
        p["queue_s"][i] = o.slot.start_s - o.ready_s
        p["inference_s"][i] = o.slot.inference_s
        p["down_s"][i] = o.down_s


def _empty_records(d: Demand) -> Records:
    n = len(d)

    def ints(fill: int) -> IntArray:
        return np.full(n, fill, dtype=np.int64)

    return Records(
        demand=d,
        status=ints(-1),
        serving_sat=ints(-1),
        uplink_station=ints(-1),
        downlink_station=ints(-1),
        up_hops=ints(0),
        down_hops=ints(0),
        batch=ints(-1),
        delivered_s=np.full(n, np.nan),
        parts={p: np.zeros(n) for p in PARTS},
        batch_sat=np.zeros(0, dtype=np.int64),
        batch_start_s=np.zeros(0),
        batch_duration_s=np.zeros(0),
        batch_size=np.zeros(0, dtype=np.int64),
        batch_model=np.zeros(0, dtype=np.int64),
        replans=ints(0),
    )
