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

The ground segment is finite (``sim.world``): only the passes the stations' antennas
track are links in the routing tables, and each carries at most rate x duration each
way. Booking a query reserves its bytes on the pass its way up starts on and its
answer's bytes on the pass its way down ends on; a candidate whose uplink pass is full
is skipped, and an answer whose downlink pass is full waits for the next step whose way
down has room (approximation: volume is reserved per pass, not as a time slot within
it; the route at that step is the tables' one, not re-searched around the full pass).

Failures (the scenario's [[failures]]) are out of the routing tables while they last;
mission control learns of one when it starts. A satellite known to be out is no
candidate; a query whose serving satellite fails while it holds the query (from the
query on board to the answer sent down) is planned again from the ground at that moment,
its latency still counted from its submission (``failover_s``: the time lost), so it ends
delivered or explicitly rejected; an Earth-observation image dies with the satellite that
took it (``satellite-lost``).

Candidates are scanned in order of their up + down delay at submission; one is skipped
as soon as a lower bound cannot beat the policy's bound (for most: the best delivery
found so far), so the skipping never changes the choice. The bound before its queue is
looked at: the delivery if its queue were empty (the end of its inference, then the
earliest arrival down the tables give from then on, ``_arrival_floor``, plus the
answer's transmission over one ground hop); candidates are evaluated in the order of
that bound, so the scan stops at the first that cannot win; then the same bound with its
actual slot (``energy-aware`` scans every candidate within the deadline). Deterministic:
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
    pass_bytes_up: FloatArray  # bytes reserved on each tracked pass (world.passes), up
    pass_bytes_down: FloatArray  # and down


class _Candidate(NamedTuple):
    """A satellite the query reaches at step k (a tuple: millions are made per run)."""

    sat: int
    up_s: float  # uplink delay from the departure
    hops: int
    up_pass: int  # the tracked pass the way up starts on (-1: none, on board already)

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
    pass_up: int
    pass_down: int


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
        # earliest arrival on the ground from each satellite leaving after step k
        arrive = np.arange(self.n_steps)[:, None] * self.step_s + self.down_delay
        later = np.minimum.accumulate(arrive[::-1], axis=0)[::-1]
        self.later_arrival_s = np.vstack([later[1:], np.full((1, later.shape[1]), np.inf)])
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
        self.s_ground = 8.0 / net.ground_rate_bps  # seconds per byte, down
        self.s_up = 8.0 / net.uplink_rate_bps  # and up
        self.s_isl = 8.0 / net.isl.rate_bps
        self.hw_of_sat = world.hw_of_sat.tolist()
        self.batches: list[tuple[int, float, float, int]] = []  # sat, start, duration, model
        self.batch_size: list[int] = []
        self.sat_failures: dict[int, list[Failure]] = {}
        for f in world.failures:
            if f.outage.kind == OutageKind.SATELLITE:
                self.sat_failures.setdefault(f.nodes[0], []).append(f)
        self.struck: list[tuple[float, int]] = []  # (when, request) to plan again
        passes = world.passes
        duration = passes.los_s - passes.aos_s
        self.capacity_up = passes.up_rate_bps * duration / 8.0  # bytes each pass carries
        self.capacity_down = passes.rate_bps * duration / 8.0
        self.room_up: list[float] = self.capacity_up.tolist()  # what is left of it
        self.room_down: list[float] = self.capacity_down.tolist()

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
        out.pass_bytes_up = self.capacity_up - np.array(self.room_up, dtype=np.float64)
        out.pass_bytes_down = self.capacity_down - np.array(self.room_down, dtype=np.float64)
        return out

    def _plan_struck(self, until_s: float, out: Records) -> None:
        """Plan again, in time order, the requests failures struck up to ``until_s``."""
        while self.struck and self.struck[0][0] <= until_s:
            at_s, i = heapq.heappop(self.struck)
            self._plan(i, out, at_s)

    def _candidates(
        self, i: int, t_s: float, q_bytes: float
    ) -> tuple[float, float, Sequence[tuple[int, float, int, int]]] | int:
        """(terrestrial s, uplink departure, [(sat, up delay, hops, uplink pass)]) or a
        rejection code; a candidate whose uplink pass cannot take ``q_bytes`` is none."""
        d, tb = self.d, self.w.tables
        assert tb.best_pass is not None
        if d.kind[i] == EO:
            return 0.0, t_s, [_Candidate(int(d.satellite[i]), 0.0, 0, -1)]
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
            pids = tb.best_pass[k, src, g].tolist()
            room, fails = self.room_up, self.sat_failures
            cands = [
                (s, u, h, p)
                for s, u, h, p in zip(sats, ups, hops, pids, strict=True)
                if s >= 0
                and room[p] >= q_bytes
                and not (fails and self._known_out(s, t_s, depart, depart))
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
        q_bytes = float(d.query_bytes[i])
        found = self._candidates(i, t_s, q_bytes)
        if isinstance(found, int):
            out.status[i] = found
            return
        fiber, depart, cands = found
        full_row = self.full_batch_s[i].tolist()
        # the policy's bound prunes the scan (for most: the best delivery so far)
        policy = self.policy
        bound = policy.first_bound_s(submitted, self.deadline_s)
        options: list[_Option] = []
        a_tx = float(d.answer_bytes[i]) * self.s_ground  # at least one ground hop down
        scan = []
        for sat, up_s, hops, up_pass in cands:
            tx = q_bytes * (self.s_up + (hops - 1) * self.s_isl) if hops else 0.0
            ready = depart + up_s + tx
            full = full_row[self.hw_of_sat[sat]]
            floor = self._arrival_floor(ready + full, sat) + a_tx  # on an empty queue
            if floor < bound:
                scan.append((floor, sat, ready, full, hops, up_pass))
        scan.sort()
        for floor, sat, ready, full, hops, up_pass in scan:
            if floor >= bound:
                break  # nor can any after it
            option = self._option(i, sat, ready, full, hops, bound, t_s, up_pass)
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
            self.room_down[pick.pass_down] += float(d.answer_bytes[i])  # never sent
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
        self, i: int, sat: int, ready: float, full: float, hops: int, bound: float,
        now_s: float, up_pass: int,
    ) -> _Option | None:  # fmt: skip
        """Serving on ``sat`` (None: not admitted, known to be out, no way down, or no
        better than bound)."""
        d, tb, h = self.d, self.w.tables, self.w.health
        if self.infinite:
            slot = Slot(ready, 0.0, None)
        else:
            slot = self.queues[sat].slot(
                ready, int(d.prompt_tokens[i]), int(d.output_tokens[i]), full, int(d.model[i])
            )
        end = slot.start_s + slot.inference_s
        k = int(end // self.step_s)
        if k >= self.n_steps:
            return None
        a_bytes = float(d.answer_bytes[i])
        if self._arrival_floor(end, sat) + a_bytes * self.s_ground >= bound or (
            h is not None and not h.admits(sat, slot.start_s, slot.inference_s)
        ):
            return None
        k, down_pass = self._down_step(int(tb.next_down_step[k, sat]), sat, a_bytes)
        if k < 0:
            return None
        dep = max(end, k * self.step_s)
        hops_down = int(tb.down_hops[k, sat])
        down = float(self.down_delay[k, sat]) + a_bytes * (
            self.s_ground + (hops_down - 1) * self.s_isl
        )
        delivered = dep + down
        if delivered > self.horizon_s or (
            self.sat_failures and self._known_out(sat, now_s, ready, dep)
        ):
            return None
        return _Option(
            sat, slot, ready, dep, down, delivered, int(tb.down_station[k, sat]), hops, hops_down,
            up_pass, down_pass,
        )  # fmt: skip

    def _arrival_floor(self, end_s: float, sat: int) -> float:
        """A lower bound on when anything leaving ``sat`` at ``end_s`` reaches the ground
        (transmission aside): the earliest arrival over the tables' ways down from then
        on, less a nanosecond against rounding."""
        k = int(end_s // self.step_s)
        if k >= self.n_steps:
            return np.inf
        now = end_s + float(self.down_delay[k, sat])
        return min(now, float(self.later_arrival_s[k, sat])) - 1e-9

    def _down_step(self, k: int, sat: int, size_bytes: float) -> tuple[int, int]:
        """(step, pass) of the first way down from ``sat`` at or after step ``k`` whose
        pass has room for ``size_bytes``; (-1, -1) if none before the horizon."""
        tb = self.w.tables
        assert tb.down_pass is not None
        while k >= 0:
            pid = int(tb.down_pass[k, sat])
            if self.room_down[pid] >= size_bytes:
                return k, pid
            k = int(tb.next_down_step[k + 1, sat]) if k + 1 < self.n_steps else -1
        return -1, -1

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
            batch = queue.book(
                o.slot, int(d.prompt_tokens[i]), int(d.output_tokens[i]), int(d.model[i])
            )
            queue.retire_before(t_s)  # no later query can join a slot that started before now
            if batch.tag >= 0:
                index = batch.tag
                self.batch_size[index] += 1
            else:
                index = batch.tag = len(self.batches)
                self.batches.append((o.sat, batch.start_s, batch.inference_s, int(d.model[i])))
                self.batch_size.append(1)
        if o.pass_up >= 0:
            self.room_up[o.pass_up] -= float(d.query_bytes[i])
        self.room_down[o.pass_down] -= float(d.answer_bytes[i])
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
        pass_bytes_up=np.zeros(0),
        pass_bytes_down=np.zeros(0),
    )
