"""The antennas of a finite ground segment: which passes each station's dishes track.

A station has a number of antennas; an antenna tracks one satellite at a time and needs
``handover_s`` (slew to the next satellite and re-acquire) between two passes. Given the
visibility windows (every pass of every satellite over the station), :func:`allocate`
picks the passes the station's antennas track, whole passes from AOS to LOS, so that the
volume they can carry (rate x duration) is the greatest possible, and puts each on an
antenna.

Method. Pass i occupies an antenna over [AOS_i, LOS_i + handover). A choice of passes is
feasible exactly when no instant is covered by more chosen passes than the station has
antennas (interval graphs are perfect: then the passes can be coloured with that many
antennas, greedily by AOS). The best feasible choice is a minimum-cost flow (Arkin &
Silverberg 1987): k units of flow along the time line, each pass a detour of capacity 1
and cost -volume; successive shortest paths with potentials (Dijkstra, scipy) solve it
exactly, about 0.5 s for 15,000 passes of one station over a day on this machine.
tests/test_antennas.py checks it against brute force and networkx's min-cost flow.
Approximation, stated: a pass is tracked whole or not at all (real schedulers may cut
one short to start the next).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from starcompute.errors import InputError
from starcompute.ground.stations import GroundStation
from starcompute.links.contact_plan import ContactPlan, GroundContacts

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
DEFAULT_HANDOVER_S = 60.0  # slew + re-acquisition between two passes (assumed)


def allocate(
    passes: GroundContacts, antennas: Sequence[int], handover_s: float = DEFAULT_HANDOVER_S
) -> tuple[GroundContacts, IntArray]:
    """The passes tracked (in AOS order, then station and satellite, as contact plans
    sort) and the antenna of each.

    ``antennas[s]``: how many antennas station s has (0: it tracks nothing)."""
    if handover_s < 0 or not np.isfinite(handover_s):
        raise InputError(f"handover must be a finite number of seconds >= 0, got {handover_s}")
    if any(k < 0 for k in antennas):
        raise InputError(f"antenna counts must be >= 0, got {list(antennas)}")
    kept: list[IntArray] = []
    dish: list[IntArray] = []
    capacity = passes.capacity_bytes()
    for s in np.unique(passes.station):
        rows = np.flatnonzero(passes.station == s)
        rows = rows[np.argsort(passes.aos_s[rows], kind="stable")]
        k = int(antennas[int(s)]) if int(s) < len(antennas) else 0
        start, end = passes.aos_s[rows], passes.los_s[rows] + handover_s
        chosen = best_subset(start, end, np.maximum(capacity[rows], 1e-9), k)
        kept.append(rows[chosen])
        dish.append(colour(start[chosen], end[chosen], k))
    if not kept:
        return passes.select(np.zeros(0, dtype=np.int64)), np.zeros(0, dtype=np.int64)
    rows, antenna = np.concatenate(kept), np.concatenate(dish)
    order = np.lexsort((passes.satellite[rows], passes.station[rows], passes.aos_s[rows]))
    return passes.select(rows[order]), antenna[order]


def best_subset(start: FloatArray, end: FloatArray, weight: FloatArray, k: int) -> IntArray:
    """Indices of the intervals [start, end) of greatest total weight such that no
    instant is covered more than ``k`` times (``weight`` > 0)."""
    n = len(start)
    if k <= 0 or n == 0:
        return np.zeros(0, dtype=np.int64)
    starts, ends = np.sort(start), np.sort(end)
    # intervals covering each start point (the most overlap is at one of them)
    depth = np.searchsorted(starts, starts, side="right") - np.searchsorted(ends, starts, "right")
    if depth.max() <= k:
        return np.arange(n, dtype=np.int64)  # every pass fits
    return _min_cost_flow(start, end, weight, k)


def _min_cost_flow(start: FloatArray, end: FloatArray, weight: FloatArray, k: int) -> IntArray:
    """k units of flow along the time line from the first instant to the last; interval
    i is a detour start_i -> via_i -> end_i of capacity 1 and cost -weight_i. Successive
    shortest paths (Dijkstra on reduced costs, scipy) from potentials that a pass over
    the time line (a DAG) gives exactly."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import dijkstra

    n = len(start)
    times, inverse = np.unique(np.concatenate([start, end]), return_inverse=True)
    m = len(times)
    s_node, e_node, via = inverse[:n], inverse[n:], m + np.arange(n)
    # edges: time line j -> j+1 (cap k), then start -> via (cap 1, -w), via -> end (cap 1)
    tail = np.concatenate([np.arange(m - 1), s_node, via])
    head = np.concatenate([np.arange(1, m), via, e_node])
    cap = np.concatenate([np.full(m - 1, k), np.ones(2 * n, dtype=np.int64)])
    cost = np.concatenate([np.zeros(m - 1), -weight, np.zeros(n)])
    flow = np.zeros(len(tail), dtype=np.int64)
    potential = _dag_distances(m, s_node, e_node, weight)
    size = m + n
    edge_of = {(a, b): e for e, (a, b) in enumerate(zip(tail.tolist(), head.tolist(), strict=True))}
    for _ in range(k):
        fwd = flow < cap
        back = flow > 0
        u = np.concatenate([tail[fwd], head[back]])
        v = np.concatenate([head[fwd], tail[back]])
        rc = np.concatenate([cost[fwd], -cost[back]]) + potential[u] - potential[v]
        graph = csr_matrix((np.maximum(rc, 0.0), (u, v)), shape=(size, size))
        dist, pred = dijkstra(graph, indices=0, return_predecessors=True)
        if not np.isfinite(dist[m - 1]):
            break
        node = m - 1
        while node != 0:
            prev = int(pred[node])
            e = edge_of.get((prev, node))
            if e is not None and flow[e] < cap[e]:
                flow[e] += 1
            else:
                flow[edge_of[(node, prev)]] -= 1
            node = prev
        potential = potential + np.where(np.isfinite(dist), dist, dist[np.isfinite(dist)].max())
    return np.flatnonzero(flow[m - 1 : m - 1 + n] > 0).astype(np.int64)


def _dag_distances(m: int, s_node: IntArray, e_node: IntArray, weight: FloatArray) -> FloatArray:
    """Shortest distances from the first instant over the time line and the detours
    (costs -weight): the potentials that make every reduced cost >= 0."""
    n = len(s_node)
    at_time = np.full(m, np.inf)
    at_via = np.zeros(n)
    at_time[0] = 0.0
    starting: list[list[int]] = [[] for _ in range(m)]
    for i, j in enumerate(s_node.tolist()):
        starting[j].append(i)
    for j in range(m):  # time order: every edge goes forward in time
        if j:
            at_time[j] = min(at_time[j], at_time[j - 1])
        for i in starting[j]:
            at_via[i] = at_time[j] - weight[i]
            e = int(e_node[i])
            at_time[e] = min(at_time[e], at_via[i])
    return np.concatenate([at_time, at_via])


def colour(start: FloatArray, end: FloatArray, k: int) -> IntArray:
    """An antenna (0..k-1) for each interval, none tracking two at once (greedy by
    start: optimal for interval graphs, so k suffice when at most k overlap)."""
    free_at = np.full(k, -np.inf)
    out = np.zeros(len(start), dtype=np.int64)
    for j in np.argsort(start, kind="stable"):
        ready = np.flatnonzero(free_at <= start[j])
        if not len(ready):
            raise RuntimeError("more passes overlap than the station has antennas")
        d = int(ready[np.argmax(free_at[ready])])  # the one freed last: keep others open
        out[j], free_at[d] = d, end[j]
    return out


def tracked_plan(
    plan: ContactPlan, stations: Sequence[GroundStation], handover_s: float = DEFAULT_HANDOVER_S
) -> tuple[ContactPlan, IntArray]:
    """The plan on a finite ground segment: its ground contacts cut to the passes the
    stations' antennas track (``GroundStation.antennas``), and the antenna of each."""
    by_name = {s.name: s for s in stations}
    missing = [n for n in plan.stations if n not in by_name]
    if missing:
        raise InputError(f"no antenna count for station(s) {', '.join(missing)}")
    counts = [by_name[n].antennas for n in plan.stations]
    ground, dish = allocate(plan.ground, counts, handover_s)
    return dataclasses.replace(plan, ground=ground), dish
