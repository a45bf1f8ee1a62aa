"""Contact finding vs brute-force 1-second SGP4 stepping, short-pass detection, ISL
topology (checked with networkx), occlusion and acquisition."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from starcompute import (
    GroundStation,
    InputError,
    IslConfig,
    contact_plan,
    load_constellation,
    load_stations,
    parse_utc,
    plus_grid,
    propagate,
    time_grid,
)
from starcompute.ground.stations import stations_ecef_km, stations_up
from starcompute.links.geometry import sin_elevation
from starcompute.orbits.constellation import _from_shells
from starcompute.orbits.walker import WalkerShell

START = parse_utc("2025-11-20T00:00:00Z")


def _brute_force_windows(const, station: GroundStation, hours: float):  # type: ignore[no-untyped-def]
    """Elevation every second straight from SGP4 (no interpolation, no refinement)."""
    eph = propagate(const, time_grid(START, hours * 3600.0, 1.0))
    pos, up = stations_ecef_km([station])[0], stations_up([station])[0]
    el = np.degrees(np.arcsin(sin_elevation(eph.r_ecef_km(), pos, up)))
    up_now = el > station.min_elevation_deg
    out = []
    for sat in range(len(const)):
        change = np.flatnonzero(np.diff(up_now[sat].astype(int)))
        out += [(sat, float(k) + 0.5, int(up_now[sat, k + 1])) for k in change]
    return out


def test_pass_edges_match_one_second_brute_force() -> None:
    const = load_constellation("three-body-12")
    station = load_stations("china")[2]  # Miyun
    plan = contact_plan(const, [station], START, 6 * 3600.0)
    brute = _brute_force_windows(const, station, 6.0)
    rises = sorted((t, s) for s, t, r in brute if r == 1)
    sets = sorted((t, s) for s, t, r in brute if r == 0)
    g = plan.ground
    inside = g.aos_s > 0
    assert len(rises) == inside.sum() >= 10
    ours_rise = sorted(zip(g.aos_s[inside].tolist(), g.satellite[inside].tolist(), strict=True))
    for (t_ref, s_ref), (t, s) in zip(rises, ours_rise, strict=True):
        assert s == s_ref and abs(t - t_ref) <= 0.5 + 1e-3
    ours_set = sorted(zip(g.los_s.tolist(), g.satellite.tolist(), strict=True))
    ours_set = [x for x in ours_set if x[0] < 6 * 3600.0]
    assert len(ours_set) == len(sets)
    for (t_ref, s_ref), (t, s) in zip(sets, ours_set, strict=True):
        assert s == s_ref and abs(t - t_ref) <= 0.5 + 1e-3


def test_a_pass_shorter_than_the_sampling_step_is_found() -> None:
    const = load_constellation("three-body-12")
    base = load_stations("china")[0]
    plan = contact_plan(const, [base], START, 6 * 3600.0)
    i = int(np.argmin(plan.ground.max_elevation_deg))  # the lowest pass
    peak = float(plan.ground.max_elevation_deg[i])
    grazing = GroundStation("graze", base.lat_deg, base.lon_deg, base.alt_m, peak - 0.01)
    short = contact_plan(const, [grazing], START, 6 * 3600.0, step_s=60.0)
    match = np.flatnonzero(
        (short.ground.satellite == plan.ground.satellite[i])
        & (np.abs(short.ground.tca_s - plan.ground.tca_s[i]) < 60.0)
    )
    assert len(match) == 1
    j = match[0]
    duration = short.ground.los_s[j] - short.ground.aos_s[j]
    assert 0.0 < duration < 60.0
    assert short.ground.tca_s[j] == pytest.approx(plan.ground.tca_s[i], abs=0.5)


def test_plus_grid_degrees_and_counts_match_closed_form() -> None:
    const = load_constellation("kuiper-630")  # closed Walker delta: every satellite has 4
    eph = propagate(const, time_grid(START, 60.0, 60.0))
    links = plus_grid(const, eph.r_teme_km[:, 0], eph.v_teme_km_s[:, 0])
    graph = nx.Graph()
    graph.add_edges_from(links.tolist())
    assert len(links) == 2 * 34 * 34
    assert {d for _, d in graph.degree()} == {4}
    assert nx.is_connected(graph)


def test_laser_terminals_bound_the_links() -> None:
    """Two terminals: only the in-plane rings (34 components of 34 satellites, degree 2);
    one: no links; IslConfig carries the count and refuses a negative one."""
    const = load_constellation("kuiper-630")
    eph = propagate(const, time_grid(START, 60.0, 60.0))
    r, v = eph.r_teme_km[:, 0], eph.v_teme_km_s[:, 0]
    rings = nx.Graph(plus_grid(const, r, v, terminals=2).tolist())
    assert {d for _, d in rings.degree()} == {2}
    assert nx.number_connected_components(rings) == 34
    assert all(const.plane[a] == const.plane[b] for a, b in rings.edges())
    assert len(plus_grid(const, r, v, terminals=1)) == 0
    assert IslConfig.default().terminals == 4
    with pytest.raises(InputError, match="terminals must be >= 0"):
        IslConfig.default(terminals=-1)


def test_walker_star_has_a_seam() -> None:
    const = load_constellation("star-compute-2800")
    idx = np.flatnonzero(np.array(const.shells) == "SSO750I")
    eph = propagate(const, time_grid(START, 60.0, 60.0))
    links = plus_grid(const, eph.r_teme_km[:, 0], eph.v_teme_km_s[:, 0])
    mine = links[np.isin(links[:, 0], idx) & np.isin(links[:, 1], idx)]
    assert len(mine) == 20 * 40 + 19 * 40  # rings + inter-plane, none across the seam
    graph = nx.Graph(mine.tolist())
    degrees = np.array([graph.degree(i) for i in idx])
    edge_planes = np.isin(const.plane[idx], [0, 19])
    assert set(degrees[edge_planes]) == {3} and set(degrees[~edge_planes]) == {4}


def test_imported_sets_get_planes_inferred() -> None:
    from starcompute.orbits.constellation import from_element_sets

    walker = load_constellation("three-body-12")
    imported = from_element_sets("tb", list(zip(walker.names, walker.satrecs, strict=True)))
    eph = propagate(imported, time_grid(START, 60.0, 60.0))
    links = plus_grid(imported, eph.r_teme_km[:, 0], eph.v_teme_km_s[:, 0])
    assert len(links) == 12  # one ring of 12
    graph = nx.Graph(links.tolist())
    assert nx.is_connected(graph) and {d for _, d in graph.degree()} == {2}


def test_isl_range_and_earth_occlusion() -> None:
    epoch = START
    # two satellites half an orbit apart: 13,800 km apart through the Earth -> never up
    pair = _from_shells("pair", [WalkerShell("PAIR", 500.0, 97.4, 1, 2, phasing=0)], epoch)
    plan = contact_plan(
        pair, load_stations("ksat"), epoch, 3600.0, isl=IslConfig.default(max_range_km=20_000.0)
    )
    assert len(plan.isl) == 0
    # three-body ring: neighbours 3,560 km apart, clear of the atmosphere -> up all the time
    ring = load_constellation("three-body-12")
    plan = contact_plan(ring, load_stations("ksat"), epoch, 3600.0, isl=IslConfig.default())
    assert len(plan.isl) == 12
    assert np.all(plan.isl.start_s == 0.0) and np.all(plan.isl.end_s == 3600.0)
    assert np.all(np.abs(plan.isl.min_range_km - 3560.0) < 30.0)
    short = contact_plan(
        ring, load_stations("ksat"), epoch, 3600.0, isl=IslConfig.default(max_range_km=3000.0)
    )
    assert len(short.isl) == 0


def test_acquisition_delays_link_start() -> None:
    """Starlink-550 inter-plane links range 391-621 km over an orbit: capped at 520 km they
    drop and come back, and each return waits for the acquisition time."""
    const = load_constellation("starlink-550")
    stations = load_stations("ksat")
    cfg0 = IslConfig.default(max_range_km=520.0, acquisition_s=0.0)
    cfg15 = IslConfig.default(max_range_km=520.0, acquisition_s=15.0)
    p0 = contact_plan(const, stations, START, 2 * 3600.0, isl=cfg0)
    p15 = contact_plan(const, stations, START, 2 * 3600.0, isl=cfg15)
    key0 = {
        (a, b, round(s)): s
        for a, b, s in zip(p0.isl.a, p0.isl.b, p0.isl.start_s, strict=True)
        if s > 0
    }
    assert len(key0) > 50
    for a, b, s in zip(p15.isl.a, p15.isl.b, p15.isl.start_s, strict=True):
        if s > 0:
            assert s - key0[(a, b, round(s - 15.0))] == pytest.approx(15.0, abs=1e-6)
    assert len(p15.isl) <= len(p0.isl)


def test_a_plan_of_laser_links_only_needs_no_station() -> None:
    from starcompute import InputError, IslConfig, contact_plan, load_constellation, parse_utc

    const = load_constellation("three-body-12")
    start = parse_utc("2025-11-20T00:00:00Z")
    plan = contact_plan(const, [], start, 3600.0, isl=IslConfig.default())
    assert len(plan.ground) == 0 and len(plan.isl) == 12  # the ring of one plane
    with pytest.raises(InputError, match="needs ground stations or laser links"):
        contact_plan(const, [], start, 3600.0)
