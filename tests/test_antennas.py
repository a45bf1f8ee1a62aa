"""Antenna allocation (links/antennas.py) against independent optima: brute force over
every subset of passes on small cases, and a min-cost flow in networkx (the classic
reduction of weighted interval scheduling on k machines: Arkin & Silverberg 1987) on
larger ones."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from starcompute.errors import InputError
from starcompute.links.antennas import allocate, best_subset, colour
from starcompute.links.contact_plan import GroundContacts


def _random_intervals(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    start = np.sort(np.round(rng.uniform(0, 3000, n)))
    end = start + np.round(rng.uniform(60, 900, n))
    weight = np.round(rng.uniform(1, 100, n))
    return start, end, weight


def _feasible(start: np.ndarray, end: np.ndarray, k: int) -> bool:
    return all(np.sum((start <= t) & (t < end)) <= k for t in start)


def _brute_force(start: np.ndarray, end: np.ndarray, weight: np.ndarray, k: int) -> float:
    best = 0.0
    for r in range(len(start) + 1):
        for pick in itertools.combinations(range(len(start)), r):
            idx = list(pick)
            if _feasible(start[idx], end[idx], k):
                best = max(best, float(weight[idx].sum()))
    return best


def _min_cost_flow(start: np.ndarray, end: np.ndarray, weight: np.ndarray, k: int) -> float:
    """k units of flow along the time line; an interval is a shortcut start -> end that
    carries one unit at cost -weight."""
    import networkx as nx

    times = sorted(set(start.tolist()) | set(end.tolist()))
    g = nx.DiGraph()
    for a, b in itertools.pairwise(times):
        g.add_edge(a, b, capacity=k, weight=0)
    for i, (a, b) in enumerate(zip(start.tolist(), end.tolist(), strict=True)):
        g.add_edge(a, ("via", i), capacity=1, weight=-round(1000 * weight[i]))
        g.add_edge(("via", i), b, capacity=1, weight=0)
    g.add_node(times[0], demand=-k)
    g.add_node(times[-1], demand=k)
    flow = nx.min_cost_flow(g)
    return float(sum(weight[i] for i in range(len(start)) if flow[start[i]][("via", i)]))


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("k", [1, 2, 3])
def test_best_subset_is_the_brute_force_optimum(seed: int, k: int) -> None:
    start, end, weight = _random_intervals(np.random.default_rng(seed), 11)
    chosen = best_subset(start, end, weight, k)
    assert _feasible(start[chosen], end[chosen], k)
    assert float(weight[chosen].sum()) == pytest.approx(_brute_force(start, end, weight, k))


@pytest.mark.parametrize("seed", range(4))
def test_best_subset_matches_a_min_cost_flow(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    start, end, weight = _random_intervals(rng, 120)
    start, end = start * 4, end * 4  # spread out: overlaps of up to ~10 passes
    for k in (1, 2, 4):
        chosen = best_subset(start, end, weight, k)
        assert _feasible(start[chosen], end[chosen], k)
        assert float(weight[chosen].sum()) == pytest.approx(_min_cost_flow(start, end, weight, k))


def test_equal_starts_and_back_to_back_passes() -> None:
    """Ties at AOS count as overlapping; a pass may start the instant the previous one
    (with its handover) ends."""
    start = np.array([0.0, 0.0, 0.0, 100.0])
    end = np.array([100.0, 50.0, 100.0, 200.0])
    weight = np.array([10.0, 1.0, 10.0, 5.0])
    chosen = best_subset(start, end, weight, 2)
    assert sorted(chosen.tolist()) == [0, 2, 3]
    dish = colour(start[chosen], end[chosen], 2)
    assert sorted(dish.tolist()) == [0, 0, 1] or sorted(dish.tolist()) == [0, 1, 1]


def _passes(n: int, stations: int, seed: int) -> GroundContacts:
    rng = np.random.default_rng(seed)
    aos = np.round(rng.uniform(0, 20000, n))
    los = aos + np.round(rng.uniform(120, 700, n))
    z = np.zeros(n)
    return GroundContacts(
        rng.integers(0, stations, n).astype(np.int64),
        rng.integers(0, 50, n).astype(np.int64),
        aos, los, (aos + los) / 2, z + 45.0, z + 900.0, rng.choice([1e8, 2.2e8], n), z + 2e7,
    )  # fmt: skip


def test_allocate_gives_each_antenna_one_satellite_at_a_time() -> None:
    passes = _passes(400, 3, seed=5)
    antennas, handover_s = [1, 2, 0], 60.0
    tracked, dish = allocate(passes, antennas, handover_s)
    assert not np.any(tracked.station == 2)  # no antenna: nothing tracked
    for s, k in enumerate(antennas):
        mine = tracked.station == s
        assert np.all(dish[mine] < max(k, 1))
        for d in range(k):
            on = np.flatnonzero(mine & (dish == d))
            order = on[np.argsort(tracked.aos_s[on])]
            gaps = tracked.aos_s[order][1:] - tracked.los_s[order][:-1]
            assert np.all(gaps >= handover_s)  # one satellite at a time, with handover
    # the optimum by volume per station, not the count of passes: compare with the flow
    for s, k in enumerate(antennas[:2]):
        rows = np.flatnonzero(passes.station == s)
        rows = rows[np.argsort(passes.aos_s[rows])]
        vol = (passes.los_s[rows] - passes.aos_s[rows]) * passes.rate_bps[rows] / 1e8
        want = _min_cost_flow(passes.aos_s[rows], passes.los_s[rows] + handover_s, vol, k)
        mine = tracked.station == s
        got = float(((tracked.los_s - tracked.aos_s) * tracked.rate_bps)[mine].sum()) / 1e8
        assert got == pytest.approx(want)


def test_bad_allocation_inputs() -> None:
    passes = _passes(10, 1, seed=1)
    with pytest.raises(InputError, match="handover"):
        allocate(passes, [1], -1.0)
    with pytest.raises(InputError, match="antenna counts"):
        allocate(passes, [-1])


def test_tracked_plan_of_three_body_respects_every_station_s_antennas(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Three-Body's 12 satellites fly in a cluster, so single-antenna stations see several
    at once: `contacts --antennas` keeps fewer passes, and at no instant does a station
    track more satellites than it has antennas (handover included)."""
    from starcompute import load_constellation, load_stations, parse_utc
    from starcompute.cli.main import main
    from starcompute.links.antennas import tracked_plan
    from starcompute.links.contacts import contact_plan

    stations = load_stations("china,ksat,aws")
    plan = contact_plan(
        load_constellation("three-body-12"), stations, parse_utc("2025-11-20T00:00:00Z"), 86400.0
    )
    tracked, dish = tracked_plan(plan, stations, 60.0)
    assert 0 < len(tracked.ground) < len(plan.ground)
    g = tracked.ground
    for s, st in enumerate(stations):
        mine = g.station == s
        assert _feasible(g.aos_s[mine], g.los_s[mine] + 60.0, st.antennas)
        assert np.all(dish[mine] < st.antennas)
    args = ["contacts", "--constellation", "three-body-12", "--stations", "china,ksat,aws",
            "--start", "2025-11-20T00:00:00Z", "--hours", "24", "--antennas", "--json"]  # fmt: skip
    code = main(args)
    out = capsys.readouterr()
    assert code == 0 and f"antennas track {len(g)} of {len(plan.ground)}" in out.err


def test_station_files_carry_antenna_counts(tmp_path: Any) -> None:
    from starcompute.ground.stations import load_stations

    counts = {s.name: (s.antennas, s.antennas_source) for s in load_stations("china,ksat")}
    assert counts["KSAT-SvalSat"][0] == 100 and "Wikipedia" in counts["KSAT-SvalSat"][1]
    assert counts["Kashi"] == (2, "assumed")
    bad = tmp_path / "s.csv"
    bad.write_text("name,lat_deg,lon_deg,antennas\nX,1,2,1.5\n")
    with pytest.raises(InputError, match="antennas must be a whole number"):
        load_stations(str(bad))
    bad.write_text("name,lat_deg,lon_deg,antennas\nX,1,2,-1\n")
    with pytest.raises(InputError, match="antennas -1 is out of range"):
        load_stations(str(bad))
    plain = tmp_path / "p.csv"
    plain.write_text("name,lat_deg,lon_deg\nX,1,2\n")
    (only,) = load_stations(str(plain))
    assert (only.antennas, only.antennas_source) == (1, "assumed")


def test_mission_plans_on_the_tracked_passes() -> None:
    """Mission.build(handover_s=...) (ask/availability --antennas) routes over the passes
    the antennas track: every ground hop of a plan lies within a tracked pass."""
    from starcompute import load_constellation, load_stations, parse_utc
    from starcompute.mission.control import Mission

    const, stations = load_constellation("three-body-12"), load_stations("china,ksat,aws")
    start = parse_utc("2025-11-20T00:00:00Z")
    everything = Mission.build(const, stations, start, 6 * 3600.0)
    finite = Mission.build(const, stations, start, 6 * 3600.0, handover_s=60.0)
    assert len(finite.plan.ground) < len(everything.plan.ground)
    trace = finite.submit(None, parse_utc("2025-11-20T01:00:00Z"), 40, 64, 600, 2000)
    n_sat = len(const)
    g = finite.plan.ground
    ground_legs = 0
    for leg in trace.legs:
        names = finite.names()
        a, b = names.index(leg.src), names.index(leg.dst)
        if max(a, b) < n_sat:
            continue  # a laser hop
        st, sat = (a - n_sat, b) if a >= n_sat else (b - n_sat, a)
        t = float((leg.depart - start) / np.timedelta64(1, "s"))
        inside = (g.station == st) & (g.satellite == sat) & (g.aos_s <= t + 1e-6) & (t <= g.los_s)
        assert inside.any(), leg
        ground_legs += 1
    assert ground_legs >= 2  # up and down
