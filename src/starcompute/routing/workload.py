"""The all-station-pairs routing workload over a time span (Hypatia's forwarding state):
one table row per (time, station pair) with delay, hop count and path."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from starcompute.routing.network import Network, satellite_ecef_km, snapshot
from starcompute.routing.paths import PairRoutes, all_pairs
from starcompute.times import DatetimeArray, FloatArray


@dataclass(slots=True)
class RoutesRun:
    table: pa.Table
    step_wall_s: FloatArray  # routing compute per step (snapshot + Dijkstra + paths)
    unreachable: list[int]
    pairs: int


def _step_table(net: Network, t: np.datetime64, routes: PairRoutes) -> pa.Table:
    names = np.array(net.node_names() + [s.name for s in net.stations], dtype=object)
    station = np.array([s.name for s in net.stations], dtype=object)
    paths = routes.paths
    hops = np.maximum((paths >= 0).sum(axis=1) - 1, 0)
    text = [">".join(names[p[p >= 0]].tolist()) for p in paths]
    ok = np.isfinite(routes.delay_s)
    return pa.table(
        {
            "time": pa.array(
                np.full(len(hops), t, dtype="datetime64[ns]"), pa.timestamp("ns", "UTC")
            ),
            "src": station[routes.src].tolist(),
            "dst": station[routes.dst].tolist(),
            "one_way_delay_ms": np.where(ok, routes.delay_s * 1e3, np.nan),
            "hops": hops,
            "path": text,
        }
    )


def run_routes(
    net: Network, times: DatetimeArray, size_bytes: float = 0.0, progress: bool = False
) -> RoutesRun:
    """Shortest paths between every pair of stations at every time."""
    positions = satellite_ecef_km(net, times)
    tables, walls, unreachable = [], [], []
    pairs = 0
    for k in tqdm(range(len(times)), desc="routes", unit="step", disable=not progress, leave=False):
        t0 = time.perf_counter()
        routes = all_pairs(net, snapshot(net, positions[k], size_bytes))
        walls.append(time.perf_counter() - t0)
        unreachable.append(int(np.sum(~np.isfinite(routes.delay_s))))
        pairs = len(routes.delay_s)
        tables.append(_step_table(net, times[k], routes))
    return RoutesRun(pa.concat_tables(tables), np.array(walls), unreachable, pairs)
