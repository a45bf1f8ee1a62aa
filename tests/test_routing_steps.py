"""Per-step routing tables against single routes on the same snapshots."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse.csgraph import dijkstra

from starcompute import load_constellation, load_stations, parse_utc
from starcompute.compute.cards import load_card
from starcompute.compute.perf import ComputeTarget, PerformanceModel
from starcompute.routing.network import Network, satellite_ecef_km, snapshot
from starcompute.routing.paths import route
from starcompute.routing.steps import (
    _first_hops,
    _hop_counts,
    _next_finite,
    build_step_tables,
    join_step_tables,
)
from starcompute.spacecraft.hardware import load_hardware

START = parse_utc("2026-01-01T00:00:00Z")


@pytest.fixture(scope="module")
def net() -> Network:
    return Network.build(load_constellation("kuiper-630"), load_stations("china,aws"), START)


def test_tables_match_single_routes(net: Network) -> None:
    """For each station and the ranked satellites: the up delay and hop count equal
    routing.paths.route on the same snapshot; each satellite's way down is the nearest
    station's route delay."""
    n = net.n_sat
    half = np.arange(n) % 2 == 0
    tables = build_step_tables(net, START, 180.0, 60.0, [np.ones(n, bool), half], k_best=5)
    assert tables.n_steps == 3
    times = START + np.array([0, 60, 120], dtype="timedelta64[s]")
    r_all = satellite_ecef_km(net, times)
    for k in (0, 2):
        snap = snapshot(net, r_all[k])
        for s in range(len(net.stations)):
            for g, mask in enumerate((np.ones(n, bool), half)):
                sats = tables.best_sat[k, s, g]
                assert np.all(mask[sats[sats >= 0]])
                for rank, sat in enumerate(sats[:3]):
                    r = route(net, snap, n + s, int(sat))
                    assert r is not None
                    assert tables.best_up_s[k, s, g, rank] == pytest.approx(r.delay_s, rel=1e-6)
                    assert tables.best_hops[k, s, g, rank] == len(r.hops)
                key = tables.best_up_s[k, s, g] + tables.down_delay_s[k, sats]
                assert np.all(np.diff(key) >= -1e-9)  # ranked by up + down
        for sat in (0, 17, 300):
            downs = [route(net, snap, sat, n + s) for s in range(len(net.stations))]
            best = min(d.delay_s for d in downs if d is not None)
            assert tables.down_delay_s[k, sat] == pytest.approx(best, rel=1e-6)


def test_split_and_joined_tables_equal_one_run(net: Network) -> None:
    n = net.n_sat
    masks = [np.ones(n, bool)]
    whole = build_step_tables(net, START, 300.0, 60.0, masks, k_best=4)
    parts = [
        build_step_tables(net, START, 300.0, 60.0, masks, k_best=4, steps=range(0, 2)),
        build_step_tables(net, START, 300.0, 60.0, masks, k_best=4, steps=range(2, 5)),
    ]
    joined = join_step_tables(parts)
    for name in ("down_delay_s", "best_sat", "best_up_s", "next_up_step", "next_down_step"):
        np.testing.assert_array_equal(getattr(joined, name), getattr(whole, name))


def test_hop_counts_follow_predecessors(net: Network) -> None:
    snap = snapshot(net, satellite_ecef_km(net, np.array([START]))[0])
    sources = net.n_sat + np.arange(len(net.stations))
    _, pred = dijkstra(snap.graph, directed=True, indices=sources, return_predecessors=True)
    hops = _hop_counts(pred)
    for row in range(len(sources)):
        for node in (0, 5, 100, 600):
            walk, cur = 0, node
            while pred[row, cur] != -9999:
                cur, walk = pred[row, cur], walk + 1
            assert hops[row, node] == walk


def test_first_hops_follow_predecessors(net: Network) -> None:
    """The satellite at the ground end of each path: the node after the station when the
    predecessors are walked back (routing.paths.route on the same snapshot)."""
    snap = snapshot(net, satellite_ecef_km(net, np.array([START]))[0])
    sources = net.n_sat + np.arange(len(net.stations))
    _, pred = dijkstra(snap.graph, directed=True, indices=sources, return_predecessors=True)
    first = _first_hops(pred, sources)
    checked = 0
    for row, src in enumerate(sources):
        assert first[row, src] == -1
        for node in (0, 5, 100, 600, 1000):
            r = route(net, snap, int(src), node)
            if r is None:
                assert first[row, node] == -1
                continue
            assert first[row, node] == r.nodes[1]
            checked += 1
    assert checked > 10


def test_next_finite() -> None:
    ok = np.array([[False, True], [True, False], [False, False], [True, False]])
    assert _next_finite(ok).tolist() == [[1, 0], [1, -1], [3, -1], [3, -1]]


def test_performance_model_arrays_equal_the_scalar_estimate() -> None:
    """The simulator prices requests with the array form; it must be the same model."""
    for card, quant in (("qwen3-8b", "int8"), ("qwen3-30b-a3b", "int4")):
        target = ComputeTarget.from_profile(load_hardware("three-body-sat"))
        model = PerformanceModel(load_card(card), target, quant)
        p = np.array([1.0, 37.0, 512.0, 3000.0])
        o = np.array([1.0, 150.0, 64.0, 900.0])
        got = model.total_s_array(p, o, 8)
        want = [model.estimate(int(a), int(b), 8).total_s for a, b in zip(p, o, strict=True)]
        np.testing.assert_allclose(got, want, rtol=1e-12)
