"""Cross-checking the simulator's routes: ``simulate --verify N``.

N queries, sampled at random from the run (seeded apart from the demand), are planned a
second time at the moment the simulator plans them, through the same planning core with
the same queues, admission, policy and candidate satellites, but with the exact route
provider (``mission.routes.ContactRoutes``: contact graph routing over a contact plan
with root-found AOS/LOS and laser links after their acquisition time, on the same
tracked passes: each exact pass kept where the simulator's antennas track that station
and satellite). Nothing is booked by the second plan. What differs is only what the
step tables approximate (the grid, laser acquisition), so the figures bound that
approximation:

* ``requests`` sampled, ``compared`` (the rest the simulator rejected before it had a
  candidate: no way up in its tables within the horizon);
* ``same_serving_satellite``: the fraction of the sampled queries both planners deliver
  with the same serving satellite;
* ``delivery_delta_s``: p50/p99/max of |simulator - exact| delivery time over the queries
  both deliver; ``bound_s``: the grid step + the laser acquisition time it is held to.

Cost: the contact plan is computed once for the horizon; each sampled query searches a
contact graph cut to the hour after it (one search up, one down per candidate the bound
lets through), about 0.1-1 s a query on 2,800 satellites.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from starcompute.links.contact_plan import ContactPlan, GroundContacts
from starcompute.links.contacts import contact_plan
from starcompute.mission.planner import Core, Option, Request
from starcompute.mission.policy import Policy
from starcompute.mission.routes import ContactRoutes
from starcompute.orbits.propagate import propagate
from starcompute.routing.cgr import ContactGraph, contact_graph
from starcompute.routing.query import geometric_range_fn
from starcompute.sim.world import World
from starcompute.times import time_grid

FloatArray = npt.NDArray[np.float64]
BLOCK_S = 600.0  # queries in the same 10 minutes share one cut of the contact graph


@dataclass(slots=True)
class Verifier:
    """The exact planner beside the simulator's, for a sample of its queries."""

    plan: ContactPlan
    base: Core  # the simulator's core: queues, admission, horizon (its routes unused)
    window_s: float  # how far after a query its graph reaches
    range_fn: Any
    processing_delay_s: float
    sample: frozenset[int]
    rows: list[tuple[int, int, float, int, float]] = field(default_factory=list)
    _graph: tuple[int, ContactGraph] | None = None

    def check(
        self,
        i: int,
        req: Request,
        src: frozenset[int],
        t_in_s: float,
        candidates: list[int],
        policy: Policy,
        deadline_s: float,
        out: Callable[[int, float, float], bool] | None,
        pick: Option | None,
    ) -> None:
        """Plan query ``i`` (ready at a station in ``src`` at ``t_in_s``) on the same
        ``candidates`` with exact routes and keep both outcomes: (i, simulator sat, its
        delivery, exact sat, its delivery)."""
        routes = ContactRoutes(
            self._graph_for(t_in_s), len(self.plan.satellites), len(self.plan.stations)
        )
        _, ways = routes.ways_up(src, t_in_s, req.query_bytes, candidates)
        if out is not None:
            ways = [w for w in ways if not out(w.sat, w.ready_s, w.ready_s)]
        ways = policy.narrow(ways)
        exact = dataclasses.replace(self.base, routes=routes)
        best, _ = exact.choose(req, ways, policy, deadline_s, out)
        if best is not None and best.delivered_s - req.submitted_s > deadline_s:
            best = None
        self.rows.append(
            (
                i,
                pick.sat if pick is not None else -1,
                pick.delivered_s if pick is not None else np.nan,
                best.sat if best is not None else -1,
                best.delivered_s if best is not None else np.nan,
            )
        )

    def _graph_for(self, t_s: float) -> ContactGraph:
        block = int(t_s // BLOCK_S)
        if self._graph is None or self._graph[0] != block:
            lo, hi = block * BLOCK_S, (block + 1) * BLOCK_S + self.window_s
            g, isl = self.plan.ground, self.plan.isl
            cut = dataclasses.replace(
                self.plan,
                ground=g.select((g.los_s > lo) & (g.aos_s < hi)),
                isl=isl.select((isl.end_s > lo) & (isl.start_s < hi)),
            )
            graph = contact_graph(
                cut, processing_delay_s=self.processing_delay_s, range_fn=self.range_fn
            )
            self._graph = (block, graph)
        return self._graph[1]

    def summary(self, step_s: float, acquisition_s: float, approximation: str) -> dict[str, Any]:
        rows = np.array(self.rows, dtype=np.float64).reshape(-1, 5)
        sim_ok, exact_ok = rows[:, 1] >= 0, rows[:, 3] >= 0
        both = sim_ok & exact_ok
        delta = np.abs(rows[both, 2] - rows[both, 4])
        pct = np.percentile(delta, [50, 99]) if len(delta) else np.full(2, np.nan)
        same = both & (rows[:, 1] == rows[:, 3])
        return {
            "requests": len(self.sample),
            "compared": len(rows),
            "no_candidates": len(self.sample) - len(rows),  # rejected before any way up
            "both_delivered": int(both.sum()),
            "only_simulator_delivered": int((sim_ok & ~exact_ok).sum()),
            "only_exact_delivered": int((exact_ok & ~sim_ok).sum()),
            "same_serving_satellite": _r(float(same.sum() / both.sum()) if both.any() else 0.0),
            "delivery_delta_s": {
                "p50": _r(float(pct[0])),
                "p99": _r(float(pct[1])),
                "max": _r(float(delta.max()) if len(delta) else float("nan")),
            },
            "bound_s": step_s + acquisition_s,
            "simulator_routes": approximation,
            "exact_routes": "contact graph routing over a contact plan with root-found "
            "AOS/LOS and laser links after acquisition, on the passes the simulator's "
            "antennas track; the simulator's candidate satellites; nothing booked",
        }


def build_verifier(
    world: World, base: Core, n: int, n_requests: int, kinds: FloatArray, rng: np.random.Generator
) -> Verifier:
    """The exact planner for ``n`` queries sampled from the ``n_requests`` of a run."""
    sc, net = world.scenario, world.net
    queries = np.flatnonzero(kinds)
    sample = rng.choice(queries, size=min(n, len(queries)), replace=False)
    plan = contact_plan(
        world.const, world.stations, sc.start, world.tables.n_steps * world.tables.step_s,
        isl=net.isl,
    )  # fmt: skip
    plan.ground.rate_bps[:] = net.ground_rate_bps  # the scenario's nominal rates
    plan.ground.up_rate_bps[:] = net.uplink_rate_bps
    plan = dataclasses.replace(plan, ground=plan.ground.select(_tracked(plan, world.passes)))
    grid = time_grid(sc.start, np.ceil(plan.duration_s / 60.0) * 60.0 + 60.0, 60.0)
    eph = propagate(world.const, grid)
    return Verifier(
        plan,
        base,
        float(sc["workload"]["deadline_s"]) + BLOCK_S,
        geometric_range_fn(net, eph),
        net.processing_delay_s,
        frozenset(int(i) for i in sample),
    )


def _tracked(plan: ContactPlan, grid: GroundContacts) -> npt.NDArray[np.bool_]:
    """The exact passes that overlap a tracked grid pass of the same station and
    satellite (the same antenna allocation, at exact AOS/LOS)."""
    spans: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for s, t, a, b in zip(
        grid.station.tolist(), grid.satellite.tolist(), grid.aos_s.tolist(),
        grid.los_s.tolist(), strict=True,
    ):  # fmt: skip
        spans.setdefault((s, t), []).append((a, b))
    g = plan.ground
    keep = np.zeros(len(g), dtype=bool)
    for i, (s, t, a, b) in enumerate(
        zip(g.station.tolist(), g.satellite.tolist(), g.aos_s.tolist(), g.los_s.tolist(),
            strict=True)
    ):  # fmt: skip
        keep[i] = any(lo < b and a < hi for lo, hi in spans.get((s, t), ()))
    return keep


def _r(x: float) -> float:
    return round(x, 6) if np.isfinite(x) else x
