"""Compute a contact plan: coarse sampling of the geometry, then root refinement.

Satellites are propagated once on a coarse grid (default 60 s); edges of every window
are then bisected on Hermite-interpolated states to ``tol_s`` (default 1 ms), and
passes shorter than a grid step are caught by refining near-miss maxima (see
``starcompute.orbits.events``). Brute 1-second SGP4 stepping is never needed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from starcompute.errors import InputError
from starcompute.ground.stations import GroundStation, stations_ecef_km, stations_up
from starcompute.links.budgets import RfLinkConfig, optical_isl_rate_bps, rf_link_budget
from starcompute.links.config import (
    IslConfig,
    default_ground_rate_bps,
    default_uplink_rate_bps,
)
from starcompute.links.contact_plan import ContactPlan, GroundContacts, IslContacts
from starcompute.links.geometry import ray_clearance_km, sin_elevation, slant_range_km
from starcompute.links.topology import plus_grid
from starcompute.orbits.constellation import Constellation
from starcompute.orbits.events import find_windows, window_samples
from starcompute.orbits.propagate import Ephemeris, propagate
from starcompute.times import FloatArray, from_offsets, time_grid

IntArray = npt.NDArray[np.int64]
DEFAULT_STEP_S = 60.0
_NEAR_MISS_SIN_EL = 0.1  # ~6 deg below the mask: far more than a 60 s step can hide
_NEAR_MISS_ISL_KM = 300.0


def _station_windows(
    eph: Ephemeris,
    r_ecef: FloatArray,
    station: GroundStation,
    pos: FloatArray,
    up: FloatArray,
    tol_s: float,
) -> GroundContacts:
    sin_mask = np.sin(np.radians(station.min_elevation_deg))
    g = sin_elevation(r_ecef, pos, up) - sin_mask

    def evaluate(sat: IntArray, t_s: FloatArray) -> FloatArray:
        return np.asarray(sin_elevation(eph.r_ecef_at(sat, t_s), pos, up) - sin_mask)

    w = find_windows(g, eph.t_s, evaluate, _NEAR_MISS_SIN_EL, tol_s)
    rng = slant_range_km(eph.r_ecef_at(w.row, w.peak_s), pos)
    max_el = np.degrees(np.arcsin(np.clip(w.peak_value + sin_mask, -1.0, 1.0)))
    return GroundContacts(
        np.zeros(len(w), dtype=np.int64),
        w.row,
        w.start_s,
        w.end_s,
        w.peak_s,
        max_el,
        rng,
        np.full(len(w), np.nan),
        np.full(len(w), np.nan),
    )


def ground_contacts(
    eph: Ephemeris, stations: list[GroundStation], tol_s: float = 1e-3, progress: bool = False
) -> GroundContacts:
    """Passes of every satellite over every station, sorted by AOS."""
    if not stations:
        raise InputError("ground contacts need at least one station")
    r_ecef = eph.r_ecef_km()
    pos, up = stations_ecef_km(stations), stations_up(stations)
    parts = []
    for i in tqdm(
        range(len(stations)),
        desc="ground contacts",
        unit="station",
        disable=not progress,
        leave=False,
    ):
        part = _station_windows(eph, r_ecef, stations[i], pos[i], up[i], tol_s)
        part.station[:] = i
        parts.append(part)
    return _sorted_ground(parts)


def _sorted_ground(parts: list[GroundContacts]) -> GroundContacts:
    whole = GroundContacts.concat(parts)
    return whole.select(np.lexsort((whole.satellite, whole.station, whole.aos_s)))


def _link_distance_km(eph: Ephemeris, a: IntArray, b: IntArray) -> FloatArray:
    return np.asarray(np.linalg.norm(eph.r_teme_km[a] - eph.r_teme_km[b], axis=-1))


def _chunked(fn: Callable[[IntArray], FloatArray], n: int, chunk: int = 512) -> FloatArray:
    """Apply ``fn`` to row-index chunks and stack: bounds the (rows, T, 3) temporaries."""
    return np.concatenate([fn(np.arange(i, min(i + chunk, n))) for i in range(0, n, chunk)])


def isl_contacts(
    eph: Ephemeris, links: IntArray, config: IslConfig, tol_s: float = 1e-3
) -> IslContacts:
    """Windows of each laser link: in range and clear of Earth + atmosphere, after acquisition."""
    if len(links) == 0:
        return IslContacts.empty()
    a, b = links[:, 0], links[:, 1]
    floor_km = config.atmosphere_margin_km

    def margin(ra: FloatArray, rb: FloatArray) -> FloatArray:
        dist = np.linalg.norm(ra - rb, axis=-1)
        return np.asarray(
            np.minimum(config.max_range_km - dist, ray_clearance_km(ra, rb) - floor_km)
        )

    def evaluate(link: IntArray, t_s: FloatArray) -> FloatArray:
        return margin(eph.state_at(a[link], t_s)[0], eph.state_at(b[link], t_s)[0])

    g = _chunked(lambda k: margin(eph.r_teme_km[a[k]], eph.r_teme_km[b[k]]), len(links))
    w = find_windows(g, eph.t_s, evaluate, _NEAR_MISS_ISL_KM, tol_s)
    # a link up at the plan start is taken as already acquired
    start = np.where(w.start_s > eph.t_s[0], w.start_s + config.acquisition_s, w.start_s)
    keep = w.end_s > start
    row, start, end = w.row[keep], start[keep], w.end_s[keep]
    lo, hi = _range_extremes(eph, a, b, row, start, end)
    order = np.lexsort((b[row], a[row], start))
    rate = _mean_over_window(
        lambda t, k: optical_isl_rate_bps(
            np.linalg.norm(eph.state_at(a[row][k], t)[0] - eph.state_at(b[row][k], t)[0], axis=-1),
            config.rate_bps,
            config.max_range_km,
            config.knee_km,
        ),
        start,
        end,
    )
    return IslContacts(
        a[row][order], b[row][order], start[order], end[order], lo[order], hi[order], rate[order]
    )


def _mean_over_window(
    fn: Callable[[FloatArray, IntArray], FloatArray],
    start: FloatArray,
    end: FloatArray,
    samples: int = 9,
) -> FloatArray:
    """Mean of ``fn(t, window index)`` at ``samples`` midpoints spread over each window."""
    if len(start) == 0:
        return np.zeros(0)
    frac = (np.arange(samples) + 0.5) / samples
    t = (start[:, None] + (end - start)[:, None] * frac[None, :]).ravel()
    k = np.repeat(np.arange(len(start)), samples)
    return np.asarray(fn(t, k).reshape(len(start), samples).mean(axis=1))


def ground_rates(
    eph: Ephemeris,
    stations: list[GroundStation],
    g: GroundContacts,
    rf: RfLinkConfig | None,
    nominal_bps: float | None = None,
) -> FloatArray:
    """Mean rate of each pass in the direction of ``rf``: its RF budget over the pass, or
    ``nominal_bps`` (default: the nominal downlink rate) without one."""
    if rf is None:
        return np.full(len(g), default_ground_rate_bps() if nominal_bps is None else nominal_bps)
    rate = np.zeros(len(g))
    pos, up = stations_ecef_km(stations), stations_up(stations)
    for i, st in enumerate(stations):
        mine = np.flatnonzero(g.station == i)

        def budget(
            t: FloatArray, k: IntArray, i: int = i, mine: IntArray = mine, st: GroundStation = st
        ) -> FloatArray:
            r = eph.r_ecef_at(g.satellite[mine][k], t)
            el = np.degrees(np.arcsin(np.clip(sin_elevation(r, pos[i], up[i]), -1, 1)))
            return rf_link_budget(
                slant_range_km(r, pos[i]), el, st.lat_deg, st.lon_deg, rf
            ).rate_bps

        rate[mine] = _mean_over_window(budget, g.aos_s[mine], g.los_s[mine])
    return rate


def _range_extremes(
    eph: Ephemeris, a: IntArray, b: IntArray, row: IntArray, start: FloatArray, end: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Min and max link range per window, over its edges and every grid sample inside."""
    edge = [
        np.linalg.norm(eph.state_at(a[row], t)[0] - eph.state_at(b[row], t)[0], axis=-1)
        for t in (start, end)
    ]
    lo, hi = np.minimum(*edge), np.maximum(*edge)
    dist = _chunked(lambda k: _link_distance_km(eph, a[k], b[k]), len(a))
    window, flat, _ = window_samples(dist.shape[1], eph.t_s, row, start, end)
    np.minimum.at(lo, window, dist.ravel()[flat])
    np.maximum.at(hi, window, dist.ravel()[flat])
    return lo, hi


def contact_plan(
    const: Constellation,
    stations: list[GroundStation],
    start: np.datetime64,
    duration_s: float,
    isl: IslConfig | None = None,
    step_s: float = DEFAULT_STEP_S,
    tol_s: float = 1e-3,
    progress: bool = False,
    rf: RfLinkConfig | None = None,
    rf_up: RfLinkConfig | None = None,
) -> ContactPlan:
    """Ground passes (and laser-link windows when ``isl`` is given) over ``duration_s``.

    With ``rf`` (a downlink) each pass gets the mean rate of its RF link budget and passes
    on which no MODCOD closes are dropped; without it every pass gets the nominal rate.
    ``rf_up`` (an uplink) likewise rates the way up (0 where it does not close: the pass
    then carries nothing up); without it the nominal uplink rate. With no
    stations the plan holds laser links only (``isl`` is then required).
    """
    if not stations and isl is None:
        raise InputError("a contact plan needs ground stations or laser links (isl)")
    if not duration_s > 0:
        raise InputError(f"duration must be positive, got {duration_s} s")
    if not 1.0 <= step_s <= 300.0:
        raise InputError(f"sampling step must be within 1..300 s, got {step_s}")
    n_steps = int(np.ceil(duration_s / step_s))
    grid = time_grid(start, n_steps * step_s, step_s)  # uniform, covers the span
    eph = propagate(const, grid)
    ground = GroundContacts.empty()
    if stations:
        ground = ground_contacts(eph, stations, tol_s, progress).clipped(duration_s)
        ground.rate_bps = ground_rates(eph, stations, ground, _direction(rf, "down"))
        ground = ground.select(ground.rate_bps > 0)
        ground.up_rate_bps = ground_rates(
            eph, stations, ground, _direction(rf_up, "up"), default_uplink_rate_bps()
        )
    isl_windows = IslContacts.empty()
    if isl is not None:
        links = plus_grid(const, eph.r_teme_km[:, 0], eph.v_teme_km_s[:, 0], isl.terminals)
        isl_windows = isl_contacts(eph, links, isl, tol_s).clipped(duration_s)
    return ContactPlan(
        start=start,
        end=from_offsets(start, [duration_s])[0],
        satellites=list(const.names),
        stations=[s.name for s in stations],
        ground=ground,
        isl=isl_windows,
        ground_rate_bps=default_ground_rate_bps(),
        isl_rate_bps=isl.rate_bps if isl else IslConfig.default().rate_bps,
        uplink_rate_bps=default_uplink_rate_bps(),
    )


def _direction(rf: RfLinkConfig | None, direction: str) -> RfLinkConfig | None:
    if rf is not None and rf.direction != direction:
        raise InputError(
            f"RF preset {rf.band!r} is a {rf.direction}link budget; for the {direction}link "
            f"choose one of {', '.join(RfLinkConfig.presets(direction))}"
        )
    return rf
