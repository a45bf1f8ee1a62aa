"""Routing tables on a time grid, for planning very many queries at once.

At every grid step the snapshot network (``routing.network``) is solved from every ground
station (scipy Dijkstra, one run per station per step). What a planner of many queries
needs is kept, compactly:

* ``down_delay_s[k, j]``: from satellite j to the nearest station (any station), and the
  station and hop count of that path (the answer's way down);
* for each *eligible set* of satellites (e.g. those holding a model) and each source
  (every station, plus ``ANY``: whichever station is best, terrestrial hand-off), the
  ``k_best`` satellites ranked by up + down delay at that step, with their up delay and
  hop count (the query's way up).

Delays are propagation + per-hop processing (serialization is per message: callers add
size x 8 / rate per hop). A satellite or station with no path at step k has delay inf;
``next_up_step`` / ``next_down_step`` give the first step at or after k with a path
(store-and-forward at grid resolution: a message waits on the ground or on board for
the next step whose snapshot connects it).

A finite ground segment (``passes``: the passes the stations' antennas track, on the
grid, see :func:`grid_passes` and ``links.antennas``) leaves only the tracked
station-satellite links in each snapshot; ``down_gateway`` / ``best_gateway`` name the
satellite at the ground end of each path and ``down_pass`` / ``best_pass`` the tracked
pass it uses (-1 when none), so that a planner can reserve volume on it.

Outages (``outages``: (start s, end s, nodes) from ``start``; one node: a satellite or
station out, two: the link between them down) change every snapshot taken while they
last: no path crosses an out station, a down link or an out satellite. An out satellite
keeps its own way in and out in the tables (a planner that does not yet know of its
failure must not be warned by them); callers leave it out of serving themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_array
from scipy.sparse.csgraph import dijkstra

from starcompute.errors import InputError
from starcompute.links.contact_plan import GroundContacts
from starcompute.orbits.frames import teme_to_ecef
from starcompute.orbits.propagate import iter_propagate
from starcompute.routing.network import Network, in_view, snapshot
from starcompute.times import FloatArray, from_offsets

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
_NO_NODE = -9999  # scipy's predecessor marker
ProgressFn = Callable[[int], None]
Outage = tuple[float, float, tuple[int, ...]]  # start s, end s (inf: for good), nodes


@dataclass(slots=True)
class StepTables:
    """Per-step routing tables (k = step, s = source, g = eligible set, r = rank)."""

    start: np.datetime64
    step_s: float
    n_sat: int
    n_stations: int
    down_delay_s: npt.NDArray[np.float32]  # (T, N), inf: no path
    down_station: npt.NDArray[np.int16]  # (T, N)
    down_hops: npt.NDArray[np.uint8]  # (T, N)
    best_sat: npt.NDArray[np.int32]  # (T, S + 1, G, K); -1 where fewer are reachable
    best_up_s: npt.NDArray[np.float32]  # (T, S + 1, G, K), inf where -1
    best_hops: npt.NDArray[np.uint8]  # (T, S + 1, G, K) hops of the up path
    next_up_step: npt.NDArray[np.int32]  # (T, S + 1, G): first step >= k with a candidate
    next_down_step: npt.NDArray[np.int32]  # (T, N): first step >= k with a way down
    subpoint_deg: npt.NDArray[np.float32]  # (T, N, 2) geocentric latitude, longitude
    down_gateway: npt.NDArray[np.int32]  # (T, N) satellite at the ground end of the way down
    best_gateway: npt.NDArray[np.int32]  # (T, S + 1, G, K) satellite at the ground end going up
    down_pass: npt.NDArray[np.int32] | None = None  # (T, N) tracked pass of the way down
    best_pass: npt.NDArray[np.int32] | None = None  # (T, S + 1, G, K) tracked pass going up

    @property
    def n_steps(self) -> int:
        return int(self.down_delay_s.shape[0])

    @property
    def any_source(self) -> int:
        """Source index meaning "whichever station is best" (terrestrial hand-off)."""
        return self.n_stations


def build_step_tables(
    net: Network,
    start: np.datetime64,
    duration_s: float,
    step_s: float,
    eligible: Sequence[BoolArray],
    k_best: int = 16,
    progress: ProgressFn | None = None,
    steps: range | None = None,
    outages: Sequence[Outage] = (),
    passes: GroundContacts | None = None,
) -> StepTables:
    """Solve the snapshot network every ``step_s`` over ``duration_s`` from ``start``
    (only the grid steps in ``steps`` if given: see ``join_step_tables``), without what
    ``outages`` take out while they last; with ``passes`` (on this grid) only the
    station-satellite links they track."""
    if not (np.isfinite(step_s) and step_s > 0):
        raise InputError(f"time step must be > 0 s, got {step_s}")
    if not eligible:
        raise InputError("routing tables need at least one eligible set of satellites")
    n, n_st = net.n_sat, len(net.stations)
    masks = np.array([np.asarray(m, dtype=bool) for m in eligible])
    if masks.shape[1:] != (n,):
        raise InputError(f"eligible sets must have one flag per satellite ({n})")
    k_best = max(1, min(k_best, n))
    if not (np.isfinite(duration_s) and duration_s >= step_s):
        raise InputError(f"duration must be >= one time step ({step_s} s), got {duration_s}")
    steps = steps if steps is not None else range(grid_steps(duration_s, step_s))
    offsets = np.asarray(steps, dtype=np.float64) * float(step_s)
    times = from_offsets(start, offsets)
    out = _allocate(len(times), n, n_st, len(masks), k_best)
    sources = net.n_sat + np.arange(n_st)
    k = 0
    for eph in iter_propagate(net.const, times):
        r_ecef = np.transpose(teme_to_ecef(eph.r_teme_km, eph.times), (1, 0, 2))
        for r in r_ecef:
            out["subpoint_deg"][k] = _subpoint_deg(r)
            tracked = None if passes is None else _tracked_at(passes, steps[k], step_s, n_st, n)
            graph = snapshot(net, r, tracked=tracked).graph
            out_now = [nodes for a, b, nodes in outages if a <= offsets[k] < b]
            if out_now:
                graph = _without(graph, out_now, n)
            dist, pred = dijkstra(graph, directed=True, indices=sources, return_predecessors=True)
            first = _first_hops(pred, sources)[:, :n]
            _fill_step(out, k, dist[:, :n], _hop_counts(pred)[:, :n], first, masks, k_best)
            k += 1
            if progress is not None:
                progress(1)
    return _finish(StepTables(start, float(step_s), n, n_st, **out))


def _without(graph: csr_array, outages: list[tuple[int, ...]], n_sat: int) -> csr_array:
    """The graph less what is out: a station's edges, a link's two directions, and every
    edge out of a satellite (it relays nothing; it stays reachable, so whether it may
    still serve is the planner's call, made with what it knows when it plans)."""
    coo = graph.tocoo()
    row, col = coo.row, coo.col
    keep = np.ones(len(row), dtype=bool)
    for nodes in outages:
        if len(nodes) == 2:
            a, b = nodes
            keep &= ~(((row == a) & (col == b)) | ((row == b) & (col == a)))
        elif nodes[0] < n_sat:
            keep &= row != nodes[0]
        else:
            keep &= (row != nodes[0]) & (col != nodes[0])
    return csr_array((coo.data[keep], (row[keep], col[keep])), shape=graph.shape)


def grid_steps(duration_s: float, step_s: float) -> int:
    return int(np.ceil(duration_s / step_s - 1e-9))


def join_step_tables(parts: Sequence[StepTables]) -> StepTables:
    """Tables of consecutive step ranges, joined into one."""
    first = parts[0]
    arrays = {
        name: np.concatenate([getattr(p, name) for p in parts])
        for name in StepTables.__slots__
        if isinstance(getattr(first, name), np.ndarray)
    }
    return _finish(StepTables(first.start, first.step_s, first.n_sat, first.n_stations, **arrays))


def _finish(tables: StepTables) -> StepTables:
    tables.next_up_step[:] = _next_finite(np.isfinite(tables.best_up_s[..., 0]))
    tables.next_down_step[:] = _next_finite(np.isfinite(tables.down_delay_s))
    return tables


def _allocate(n_t: int, n: int, n_st: int, n_g: int, k_best: int) -> dict[str, np.ndarray]:
    shape = (n_t, n_st + 1, n_g, k_best)
    return {
        "down_delay_s": np.full((n_t, n), np.inf, dtype=np.float32),
        "down_station": np.full((n_t, n), -1, dtype=np.int16),
        "down_hops": np.zeros((n_t, n), dtype=np.uint8),
        "best_sat": np.full(shape, -1, dtype=np.int32),
        "best_up_s": np.full(shape, np.inf, dtype=np.float32),
        "best_hops": np.zeros(shape, dtype=np.uint8),
        "next_up_step": np.zeros(shape[:3], dtype=np.int32),
        "next_down_step": np.zeros((n_t, n), dtype=np.int32),
        "subpoint_deg": np.zeros((n_t, n, 2), dtype=np.float32),
        "down_gateway": np.full((n_t, n), -1, dtype=np.int32),
        "best_gateway": np.full(shape, -1, dtype=np.int32),
    }


def _subpoint_deg(r_ecef_km: FloatArray) -> FloatArray:
    """Geocentric latitude and longitude (deg) under each satellite (for maps)."""
    x, y, z = r_ecef_km[:, 0], r_ecef_km[:, 1], r_ecef_km[:, 2]
    lat = np.degrees(np.arctan2(z, np.hypot(x, y)))
    return np.stack([lat, np.degrees(np.arctan2(y, x))], axis=1)


def _fill_step(
    out: dict[str, np.ndarray],
    k: int,
    up_s: FloatArray,
    hops: IntArray,
    first: IntArray,
    masks: BoolArray,
    k_best: int,
) -> None:
    """One step's tables from the (S, N) delays, hop counts and first hops station ->
    satellite."""
    nearest = np.argmin(up_s, axis=0)
    cols = np.arange(up_s.shape[1])
    down = up_s[nearest, cols]  # links are symmetric: the way down mirrors the way up
    out["down_delay_s"][k] = down
    out["down_station"][k] = np.where(np.isfinite(down), nearest, -1)
    out["down_hops"][k] = hops[nearest, cols]
    out["down_gateway"][k] = np.where(np.isfinite(down), first[nearest, cols], -1)
    up_all = np.vstack([up_s, down[None, :]])  # row S: the best station for each satellite
    hops_all = np.vstack([hops, hops[nearest, cols][None, :]])
    first_all = np.vstack([first, out["down_gateway"][k][None, :]])
    for g, mask in enumerate(masks):
        key = np.where(mask[None, :], up_all + down[None, :], np.inf)
        if k_best < key.shape[1]:
            part = np.argpartition(key, k_best - 1, axis=1)[:, :k_best]
        else:
            part = np.broadcast_to(cols, key.shape)
        order = np.take_along_axis(part, np.argsort(np.take_along_axis(key, part, 1), 1), 1)
        ok = np.isfinite(np.take_along_axis(key, order, 1))
        out["best_sat"][k, :, g] = np.where(ok, order, -1)
        out["best_up_s"][k, :, g] = np.where(ok, np.take_along_axis(up_all, order, 1), np.inf)
        out["best_hops"][k, :, g] = np.where(ok, np.take_along_axis(hops_all, order, 1), 0)
        out["best_gateway"][k, :, g] = np.where(ok, np.take_along_axis(first_all, order, 1), -1)


def _hop_counts(pred: npt.NDArray[np.int32]) -> IntArray:
    """Hops from each Dijkstra source to every node (pointer doubling on predecessors)."""
    n_src, m = pred.shape
    width = m + 1  # one extra column per row: the root sentinel (depth 0, its own parent)
    base = (np.arange(n_src) * width)[:, None]
    root = base + m
    anc = np.concatenate([np.where(pred == _NO_NODE, root, pred + base), root], axis=1).ravel()
    depth = np.ones((n_src, width), dtype=np.int32)
    depth[:, m] = 0
    depth[:, :m][pred == _NO_NODE] = 0
    depth_flat = depth.ravel()
    sentinel = np.repeat(root.ravel(), width)
    while not np.array_equal(anc, sentinel):
        depth_flat = depth_flat + depth_flat[anc]
        anc = anc[anc]
    return depth_flat.reshape(n_src, width)[:, :m].astype(np.int64)


def _first_hops(pred: npt.NDArray[np.int32], sources: IntArray) -> IntArray:
    """The first node after the source on the path to every node (-1: unreachable or
    the source itself), by pointer doubling on the predecessors."""
    n_src, m = pred.shape
    base = (np.arange(n_src) * m)[:, None]
    own = base + np.arange(m)[None, :]
    stop = (pred == _NO_NODE) | (pred == sources[:, None])  # first hops and dead ends
    anc = np.where(stop, own, pred + base).ravel()
    while True:
        nxt = anc[anc]
        if np.array_equal(nxt, anc):
            break
        anc = nxt
    first = (anc.reshape(n_src, m) - base).astype(np.int64)
    return np.where(pred == _NO_NODE, -1, first)


def _tracked_at(passes: GroundContacts, step: int, step_s: float, n_st: int, n: int) -> BoolArray:
    """(S, N): the station-satellite pairs whose tracked pass covers grid step ``step``."""
    t_s = step * step_s
    act = (passes.aos_s <= t_s) & (t_s < passes.los_s)
    mask = np.zeros((n_st, n), dtype=bool)
    mask[passes.station[act], passes.satellite[act]] = True
    return mask


def grid_passes(
    net: Network, start: np.datetime64, duration_s: float, step_s: float
) -> GroundContacts:
    """Every pass of every satellite over every station on the time grid: a run of steps
    with the satellite in view is the pass [first step, last step + 1) x ``step_s``
    (grid-resolution AOS and LOS), at the network's nominal downlink and uplink rates."""
    n_steps = grid_steps(duration_s, step_s)
    times = from_offsets(start, np.arange(n_steps, dtype=np.float64) * float(step_s))
    seen = np.zeros((n_steps + 2, len(net.stations) * net.n_sat), dtype=bool)  # padded
    k = 1
    for eph in iter_propagate(net.const, times):
        r_ecef = np.transpose(teme_to_ecef(eph.r_teme_km, eph.times), (1, 0, 2))
        for block in np.array_split(r_ecef, max(1, len(r_ecef) // 32)):  # bounded memory
            seen[k : k + len(block)] = in_view(net, np.ascontiguousarray(block)).reshape(
                len(block), -1
            )
            k += len(block)
    edge = np.diff(seen.astype(np.int8), axis=0)  # +1: AOS at step t, -1: LOS at step t
    # nonzero on the transpose orders by pair then step: AOS and LOS pair up in order
    aos_pair, aos_t = np.nonzero(edge.T == 1)
    _, los_t = np.nonzero(edge.T == -1)
    station, sat = np.divmod(aos_pair, net.n_sat)
    aos_s = aos_t.astype(np.float64) * float(step_s)
    los_s = np.minimum(los_t.astype(np.float64) * float(step_s), duration_s)
    order = np.lexsort((sat, station, aos_s))
    nan = np.full(len(order), np.nan)
    return GroundContacts(
        station[order].astype(np.int64),
        sat[order].astype(np.int64),
        aos_s[order],
        los_s[order],
        nan,
        nan.copy(),
        nan.copy(),
        np.full(len(order), float(net.ground_rate_bps)),
        np.full(len(order), float(net.uplink_rate_bps)),
    )


def attach_passes(tables: StepTables, passes: GroundContacts) -> StepTables:
    """Fill ``down_pass`` / ``best_pass``: the tracked pass at the ground end of each
    path in the tables (``passes`` on the tables' grid, the ones they were built on)."""
    n_st, n = tables.n_stations, tables.n_sat
    k0 = np.rint(passes.aos_s / tables.step_s).astype(np.int64)
    k1 = np.rint(passes.los_s / tables.step_s).astype(np.int64)
    length = k1 - k0
    pid = np.repeat(np.arange(len(passes)), length)
    within = np.arange(length.sum()) - np.repeat(np.cumsum(length) - length, length)
    step = np.repeat(k0, length) + within
    pair = np.repeat(passes.station * n + passes.satellite, length)
    key = step * (n_st * n) + pair
    order = np.argsort(key)
    key, pid = key[order], pid[order]

    def lookup(k: IntArray, station: IntArray, gateway: IntArray) -> npt.NDArray[np.int32]:
        want = k * (n_st * n) + station * n + gateway
        if not len(key):
            return np.full(want.shape, -1, dtype=np.int32)
        at = np.minimum(np.searchsorted(key, want), len(key) - 1)
        hit = (gateway >= 0) & (station >= 0) & (key[at] == want)
        return np.where(hit, pid[at], -1).astype(np.int32)

    t = np.arange(tables.n_steps)[:, None]
    down_gw = tables.down_gateway.astype(np.int64)
    tables.down_pass = lookup(t, tables.down_station.astype(np.int64), down_gw)
    gw = tables.best_gateway.astype(np.int64)
    k = np.arange(tables.n_steps)[:, None, None, None]
    src = np.arange(n_st + 1)[None, :, None, None]
    nearest = tables.down_station[k, np.maximum(tables.best_sat, 0)]  # the ANY row's station
    station = np.where(src < n_st, src, nearest).astype(np.int64)
    tables.best_pass = lookup(k, station, gw)
    return tables


def _next_finite(ok: BoolArray) -> npt.NDArray[np.int32]:
    """For every index along axis 0: the first index at or after it where ``ok``, or -1."""
    n_t = ok.shape[0]
    idx = np.where(ok, np.arange(n_t).reshape((n_t,) + (1,) * (ok.ndim - 1)), n_t)
    nxt = np.minimum.accumulate(idx[::-1], axis=0)[::-1]
    return np.where(nxt >= n_t, -1, nxt).astype(np.int32)
