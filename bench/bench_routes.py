"""Benchmark: the all-station-pairs routing workload (Hypatia's forwarding state).

One command: ``.venv/bin/python bench/bench_routes.py [--json]``. For starlink-550 with
the top-100 cities (minimum elevation 25 deg, +grid ISLs, no ground relays) and for
star-compute-2800 with the same cities: wall time per time step (propagation of that
step, snapshot graph, Dijkstra from every station, every pair's path). In the same run,
the same work for one step with networkx (the readable reference) gives the in-run
ratio; satgenpy's published 7-9 s per step on a 2-core machine is the external baseline.
"""

from __future__ import annotations

import argparse
import json
import time

import networkx as nx
import numpy as np

from starcompute import load_constellation, load_stations, parse_utc, time_grid
from starcompute.routing.network import Network, satellite_ecef_km, snapshot
from starcompute.routing.paths import all_pairs

START = parse_utc("2026-01-01T00:00:00Z")
STEPS = 20
STEP_S = 0.1  # Hypatia's usual 100 ms
SATGENPY_S = (7.0, 9.0)


def _per_step(net: Network) -> tuple[float, float, int]:
    times = time_grid(START, (STEPS - 1) * STEP_S, STEP_S)
    walls, unreachable = [], 0
    for t in times:
        t0 = time.perf_counter()
        snap = snapshot(net, satellite_ecef_km(net, np.array([t]))[0])
        routes = all_pairs(net, snap)
        walls.append(time.perf_counter() - t0)
        unreachable = int(np.sum(~np.isfinite(routes.delay_s)))
    return float(np.median(walls)), float(np.max(walls)), unreachable


def _networkx_step(net: Network) -> float:
    t0 = time.perf_counter()
    snap = snapshot(net, satellite_ecef_km(net, np.array([START]))[0])
    coo = snap.graph.tocoo()
    g = nx.DiGraph()
    g.add_weighted_edges_from(
        zip(coo.row.tolist(), coo.col.tolist(), coo.data.tolist(), strict=True)
    )
    for k in range(len(net.stations)):
        src = net.n_sat + k
        if src in g:
            nx.single_source_dijkstra(g, src, weight="weight")
    return time.perf_counter() - t0


def run() -> dict[str, object]:
    stations = load_stations("top-100", 25.0)
    out: dict[str, object] = {
        "stations": len(stations),
        "min_elevation_deg": 25.0,
        "steps": STEPS,
        "step_s": STEP_S,
    }
    for preset in ("starlink-550", "star-compute-2800"):
        net = Network.build(load_constellation(preset), stations, START)
        median_s, max_s, unreachable = _per_step(net)
        nx_s = _networkx_step(net)
        out[preset] = {
            "satellites": net.n_sat,
            "isl_links": len(net.links),
            "pairs": len(stations) * (len(stations) - 1) // 2,
            "unreachable_pairs_last_step": unreachable,
            "per_step_median_s": round(median_s, 4),
            "per_step_max_s": round(max_s, 4),
            "networkx_same_work_s": round(nx_s, 3),
            "speedup_vs_networkx": round(nx_s / median_s, 1),
        }
    sl = out["starlink-550"]
    assert isinstance(sl, dict)
    out["speedup_vs_satgenpy_published"] = [round(s / sl["per_step_median_s"]) for s in SATGENPY_S]
    out["target"] = "starlink-550 + top-100: <= 0.07 s per step (>= 100x satgenpy's 7-9 s)"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    figures = run()
    print(
        json.dumps(figures, indent=1)
        if args.json
        else "\n".join(f"{k:>32}: {v}" for k, v in figures.items())
    )


if __name__ == "__main__":
    main()
