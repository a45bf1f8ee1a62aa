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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from starcompute.mission.failures import OutageKind
from starcompute.mission.health import SPARE_CHARGE
from starcompute.mission.planner import Core, Option, Request, Way
from starcompute.mission.policy import Policy, get_policy
from starcompute.mission.queues import SatelliteQueue
from starcompute.mission.routes import StepRoutes
from starcompute.sim.scenario import Scenario
from starcompute.sim.verify import Verifier, build_verifier
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
    verify: dict[str, Any] | None = None  # simulate --verify: against the exact routes


def simulate_records(
    scenario: Scenario, progress: Progress | None = None, *, verify: int = 0
) -> tuple[World, Records]:
    """Build the world, draw the demand and plan every request; with ``verify`` N, plan
    N sampled queries a second time with exact routes (``sim.verify``)."""
    check_inputs(scenario)
    world = build_world(scenario, progress)
    rng = np.random.default_rng(int(scenario[""]["seed"]))
    eo_model = _eo_model(scenario)
    eo_sats = np.flatnonzero(world.holders[eo_model]).astype(np.int64)
    if progress is not None:
        progress("demand", 0, 1)
    demand = generate(scenario, eo_sats, rng)
    planner = _Planner(world, demand, progress)
    if verify > 0:
        if progress is not None:
            progress("verify", 0, 1)
        sample_rng = np.random.default_rng([int(scenario[""]["seed"]), 17])  # apart from demand
        planner.verifier = build_verifier(
            world, planner.core, verify, len(demand), demand.kind != EO, sample_rng
        )
    records = planner.run()
    if planner.verifier is not None:
        records.verify = planner.verifier.summary(
            world.tables.step_s, world.net.isl.acquisition_s, planner.routes.approximation
        )
    return world, records


def _eo_model(scenario: Scenario) -> int:
    name = scenario["earth_observation"]["model"]
    names = [m["name"] for m in scenario.models]
    return names.index(name) if name else 0


class _Planner:
    def __init__(self, world: World, demand: Demand, progress: Progress | None) -> None:
        self.w, self.d, self.progress = world, demand, progress
        sc = world.scenario
        tb = world.tables
        self.step_s, self.n_steps = tb.step_s, tb.n_steps
        self.horizon_s = self.n_steps * self.step_s
        self.policy = get_policy(str(sc["scheduler"]["policy"]))
        self.narrows = type(self.policy).narrow is not Policy.narrow
        self.deadline_s = float(sc["workload"]["deadline_s"])
        queues = [SatelliteQueue(int(sc["scheduler"]["max_batch"])) for _ in world.const.names]
        net = world.net
        self.routes = StepRoutes(
            tb, world.passes, 8.0 / net.uplink_rate_bps, 8.0 / net.ground_rate_bps,
            8.0 / net.isl.rate_bps,
        )  # fmt: skip
        h = world.health
        self.core = Core(
            self.routes,
            queues.__getitem__,
            world.hw_of_sat.tolist(),
            (lambda sat, start, infer: True) if h is None else h.admits,
            self._thrifty,
            self.horizon_s,
            bool(sc["compute"]["infinite"]),
            None if h is None else h.draw,
        )
        self.full_batch_s = self._full_batch_times()
        self.source, self.fiber_s = self._sources()
        self.batches: list[tuple[int, float, float, int]] = []  # sat, start, duration, model
        self.batch_size: list[int] = []
        self.sat_failures: dict[int, list[Failure]] = {}
        for f in world.failures:
            if f.outage.kind == OutageKind.SATELLITE:
                self.sat_failures.setdefault(f.nodes[0], []).append(f)
        self.struck: list[tuple[float, int]] = []  # (when, request) to plan again
        self.verifier: Verifier | None = None

    def _full_batch_times(self) -> FloatArray:
        """(requests, hardware) time of a full batch of each request's size."""
        d, w = self.d, self.w
        out = np.zeros((len(d), len(w.hw_names)))
        if self.core.infinite:
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
        out.pass_bytes_up, out.pass_bytes_down = self.routes.reserved()
        return out

    def _plan_struck(self, until_s: float, out: Records) -> None:
        """Plan again, in time order, the requests failures struck up to ``until_s``."""
        while self.struck and self.struck[0][0] <= until_s:
            at_s, i = heapq.heappop(self.struck)
            self._plan(i, out, at_s)

    def _request(self, i: int) -> Request:
        d = self.d
        return Request(
            float(d.t_s[i]),
            int(d.prompt_tokens[i]),
            int(d.output_tokens[i]),
            float(d.query_bytes[i]) if d.kind[i] != EO else 0.0,
            float(d.answer_bytes[i]),
            self.full_batch_s[i].tolist(),
            int(d.model[i]),
        )

    def _ways(self, i: int, t_s: float, req: Request) -> tuple[float, float, list[Way]] | int:
        """(terrestrial s, uplink departure, ways up) or a rejection code."""
        d = self.d
        if d.kind[i] == EO:  # the image is on board the satellite that took it
            return 0.0, t_s, [Way(int(d.satellite[i]), t_s, 0, -1)]
        region = int(d.region[i])
        fiber = float(self.fiber_s[region])
        t_in = t_s + fiber
        if t_in >= self.horizon_s:
            return HORIZON

        def usable(sat: int, depart_s: float) -> bool:
            return not self._known_out(sat, t_s, depart_s, depart_s)

        found = self.routes.ways_up(
            int(self.source[region]), req.model, t_in, req.query_bytes,
            usable if self.sat_failures else None,
        )  # fmt: skip
        if found is None:
            return NO_PATH
        depart, ways = found
        return fiber, depart, self.policy.narrow(ways) if self.narrows else ways

    def _plan(self, i: int, out: Records, at_s: float | None = None) -> None:
        """Plan request ``i`` at its arrival (or again at ``at_s``, after a failure)."""
        d = self.d
        submitted = float(d.t_s[i])
        t_s = submitted if at_s is None else at_s
        if d.kind[i] == EO and self._known_out(int(d.satellite[i]), t_s, t_s, t_s):
            out.status[i] = SAT_LOST  # the image was on the satellite that failed
            return
        req = self._request(i)
        found = self._ways(i, t_s, req)
        if isinstance(found, int):
            out.status[i] = found
            return
        fiber, depart, ways = found

        def known_out(sat: int, a_s: float, b_s: float) -> bool:
            return self._known_out(sat, t_s, a_s, b_s)

        out_fn = known_out if self.sat_failures else None
        pick, n_options = self.core.choose(req, ways, self.policy, self.deadline_s, out_fn)
        if self.verifier is not None and at_s is None and i in self.verifier.sample:
            self._verify(self.verifier, i, req, t_s + fiber, pick, out_fn, [w.sat for w in ways])
        if pick is None:
            out.status[i] = NO_PATH if not n_options else DEADLINE
            return
        if pick.delivered_s - submitted > self.deadline_s:
            out.status[i] = DEADLINE
            return
        self._book(i, pick, req, out, t_s, fiber, depart)
        out.parts["failover_s"][i] = t_s - submitted
        strike = self._strike(pick.sat, t_s, pick.ready_s, pick.down.depart_s)
        if strike is not None:  # it fails while holding the query: plan again then
            self.batch_size[out.batch[i]] -= 1
            self.routes.release_down(pick, req.answer_bytes)  # the answer is never sent
            out.replans[i] += 1
            out.status[i], out.serving_sat[i], out.batch[i] = -1, -1, -1
            out.delivered_s[i] = np.nan
            if d.kind[i] == EO:
                out.status[i] = SAT_LOST
            else:
                heapq.heappush(self.struck, (strike, i))

    def _verify(
        self, verifier: Verifier, i: int, req: Request, t_in_s: float, pick: Option | None,
        out: Callable[[int, float, float], bool] | None, candidates: list[int],
    ) -> None:  # fmt: skip
        """Plan query ``i`` (at its station at ``t_in_s``) again with exact routes to the
        same candidates, beside the simulator's choice."""
        n_sat, tb = self.w.tables.n_sat, self.w.tables
        src = int(self.source[int(self.d.region[i])])
        stations = range(tb.n_stations) if src == tb.any_source else [src]
        late = pick is not None and pick.delivered_s - req.submitted_s > self.deadline_s
        ok = None if late else pick
        verifier.check(
            i, req, frozenset(n_sat + s for s in stations), t_in_s,
            candidates, self.policy, self.deadline_s, out, ok,
        )  # fmt: skip

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

    def _thrifty(self, o: Option) -> bool:
        h = self.w.health
        if h is None:
            return True
        start, infer = o.slot.start_s, o.slot.inference_s
        return h.sunlit_at(o.sat, start) and h.admits(o.sat, start, infer, SPARE_CHARGE)

    def _book(
        self, i: int, o: Option, req: Request, out: Records, t_s: float, fiber: float,
        depart: float,
    ) -> None:  # fmt: skip
        d = self.d
        batch = self.core.book(o, req)
        if batch is None:  # infinite compute: a batch of one
            index = len(self.batches)
            self.batches.append((o.sat, o.slot.start_s, 0.0, req.model))
            self.batch_size.append(1)
        else:
            self.core.queue_of(o.sat).retire_before(t_s)  # no later query joins a past slot
            if batch.tag >= 0:
                index = batch.tag
                self.batch_size[index] += 1
            else:
                index = batch.tag = len(self.batches)
                self.batches.append((o.sat, batch.start_s, batch.inference_s, req.model))
                self.batch_size.append(1)
        end = o.end_s
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
        out.downlink_station[i] = o.down.station
        out.up_hops[i] = o.up.hops
        out.down_hops[i] = o.down.hops
        out.batch[i] = index
        out.delivered_s[i] = o.delivered_s
        p = out.parts
        p["terrestrial_s"][i] = fiber
        p["wait_for_contact_s"][i] = (depart - t_s - fiber) + (o.down.depart_s - end)
        p["up_s"][i] = o.ready_s - depart
        p["queue_s"][i] = o.slot.start_s - o.ready_s
        p["inference_s"][i] = o.slot.inference_s
        p["down_s"][i] = o.delivered_s - o.down.depart_s


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
