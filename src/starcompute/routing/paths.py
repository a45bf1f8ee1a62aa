"""Shortest-delay paths on a snapshot (scipy.sparse.csgraph Dijkstra), one route or
the all-station-pairs workload (Hypatia's forwarding state, one Dijkstra per station)."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import numpy.typing as npt
from scipy.sparse.csgraph import dijkstra

from starcompute.routing.network import IntArray, Network, Snapshot
from starcompute.times import FloatArray

_NO_NODE = -9999  # scipy's predecessor marker


@dataclass(slots=True)
class Hop:
    src: int
    dst: int
    depart_s: float  # seconds after the route's start time
    arrive_s: float
    range_km: float


@dataclass(slots=True)
class Route:
    nodes: list[int]
    hops: list[Hop]
    delay_s: float


def trace_paths(pred: npt.NDArray[np.int32], rows: IntArray, targets: IntArray) -> IntArray:
    """Paths (P, L) of node indices, source first, padded with -1; all pairs at once.

    ``pred[rows[p]]`` is the predecessor row of the Dijkstra run that serves pair p.
    Unreachable pairs come back as all -1.
    """
    cur = targets.astype(np.int64).copy()
    steps = [cur.copy()]
    reachable = pred[rows, cur] != _NO_NODE
    active = reachable.copy()
    while active.any():
        nxt = pred[rows[active], cur[active]]
        cur[active] = nxt
        step = np.full(len(cur), -1, dtype=np.int64)
        step[active] = nxt
        steps.append(step)
        active[active] = pred[rows[active], cur[active]] != _NO_NODE
    walk = np.stack(steps, axis=1)  # target ... source, then -1 padding
    lengths = (walk >= 0).sum(axis=1)
    out = np.full_like(walk, -1)
    for k in range(walk.shape[1]):  # reverse each row's valid prefix
        take = lengths > k
        out[take, k] = walk[take, lengths[take] - 1 - k]
    out[~reachable] = -1
    single = targets == -1
    out[single] = -1
    return out


def route(net: Network, snap: Snapshot, src: int, dst: int) -> Route | None:
    """The shortest-delay route from ``src`` to ``dst`` on one snapshot, or None."""
    sink = net.sink(dst)
    dist, pred = dijkstra(snap.graph, directed=True, indices=[src], return_predecessors=True)
    if not np.isfinite(dist[0, sink]):
        return None
    nodes = trace_paths(pred, np.zeros(1, dtype=np.int64), np.array([sink]))[0]
    nodes = nodes[nodes >= 0]
    hops, clock = [], 0.0
    for a, b in pairwise(nodes):
        delay = float(snap.graph[a, b])
        hops.append(Hop(int(a), int(b), clock, clock + delay, float(snap.range_km[a, b])))
        clock += delay
    return Route([int(n) for n in nodes], hops, float(dist[0, sink]))


@dataclass(slots=True)
class PairRoutes:
    """Routes between every ordered pair of stations at one instant."""

    src: IntArray  # station index
    dst: IntArray
    delay_s: FloatArray  # inf where unreachable
    paths: IntArray  # (pairs, max_len) node indices, -1 padded


def station_pairs(n_stations: int) -> tuple[IntArray, IntArray]:
    """Unordered pairs i < j (paths are symmetric in delay on an undirected topology)."""
    i, j = np.triu_indices(n_stations, k=1)
    return i.astype(np.int64), j.astype(np.int64)


def all_pairs(net: Network, snap: Snapshot) -> PairRoutes:
    """One Dijkstra per station; every station pair's delay and path."""
    n_s = len(net.stations)
    sources = net.n_sat + np.arange(n_s)
    dist, pred = dijkstra(snap.graph, directed=True, indices=sources, return_predecessors=True)
    i, j = station_pairs(n_s)
    sinks = np.array([net.sink(int(net.n_sat + k)) for k in range(n_s)])[j]
    delay = dist[i, sinks]
    paths = trace_paths(pred, i, sinks)
    return PairRoutes(i, j, delay, paths)
