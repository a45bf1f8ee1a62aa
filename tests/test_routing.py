"""Routing against references: networkx on the same snapshot graphs, hand-worked
store-and-forward plans, and RTT = geometric sum of hop ranges / c on a cut-down shell
(as Hypatia's end-to-end tests do on a reduced Kuiper-630)."""

from __future__ import annotations

from itertools import pairwise

import networkx as nx
import numpy as np
import pytest

from starcompute import GroundStation, InputError, load_constellation, load_stations, parse_utc
from starcompute.ground.stations import stations_ecef_km
from starcompute.orbits.constants import SPEED_OF_LIGHT_KM_S
from starcompute.orbits.constellation import _from_shells
from starcompute.orbits.frames import teme_to_ecef
from starcompute.orbits.walker import WalkerShell
from starcompute.routing.cgr import Contact, ContactGraph
from starcompute.routing.network import Network, satellite_ecef_km, snapshot
from starcompute.routing.paths import all_pairs, route
from starcompute.routing.query import snapshot_route
from starcompute.times import to_jd

T0 = parse_utc("2026-01-01T00:00:00Z")


def _nx_graph(snap) -> nx.DiGraph:  # type: ignore[no-untyped-def]
    coo = snap.graph.tocoo()
    g = nx.DiGraph()
    g.add_weighted_edges_from(
        zip(coo.row.tolist(), coo.col.tolist(), coo.data.tolist(), strict=True)
    )
    return g


@pytest.mark.parametrize("relays", [False, True])
def test_all_pairs_delays_and_paths_equal_networkx(relays: bool) -> None:
    const = load_constellation("kuiper-630")
    stations = load_stations("top-100", 25.0)[:12]
    net = Network.build(const, stations, T0, ground_relays=relays)
    snap = snapshot(net, satellite_ecef_km(net, np.array([T0]))[0])
    routes = all_pairs(net, snap)
    g = _nx_graph(snap)
    for s, d, delay, path in zip(routes.src, routes.dst, routes.delay_s, routes.paths, strict=True):
        a, b = net.n_sat + int(s), net.sink(net.n_sat + int(d))
        if not np.isfinite(delay):
            assert a not in g or b not in g or not nx.has_path(g, a, b)
            continue
        ref = nx.shortest_path_length(g, a, b, weight="weight")
        assert delay == pytest.approx(ref, abs=1e-12)
        nodes = path[path >= 0].tolist()
        assert nodes[0] == a and nodes[-1] == b
        walked = sum(g[u][v]["weight"] for u, v in pairwise(nodes))
        assert walked == pytest.approx(ref, abs=1e-12)
        if not relays:  # no station in the middle of a path
            assert all(n < net.n_sat for n in nodes[1:-1])


def _position(const, stations, name: str, at: np.datetime64) -> np.ndarray:  # type: ignore[no-untyped-def]
    """ECEF km straight from SGP4 (satellites) or the station's geodetic position."""
    for s in stations:
        if s.name == name:
            return stations_ecef_km([s])[0]
    jd, fr = to_jd(at)
    _, r, _ = const.satrecs[const.index(name)].sgp4(float(jd), float(fr))
    return teme_to_ecef(np.array(r), at)


def test_rtt_equals_geometric_hop_ranges_over_c_on_a_cut_down_kuiper() -> None:
    """Cut-down Kuiper-630 (12 x 12 instead of 34 x 34): RTT = 2 x sum(range_i) / c, with
    ranges from SGP4 positions computed independently here, within 0.01 ms."""
    shell = WalkerShell("K630", 630.0, 51.9, planes=12, sats_per_plane=12, phasing=1)
    const = _from_shells("kuiper-cut", [shell], T0)
    stations = [
        GroundStation("Paris", 48.8566, 2.3522, 35.0, 10.0),
        GroundStation("Moscow", 55.7558, 37.6173, 150.0, 10.0),
    ]
    net = Network.build(const, stations, T0, processing_delay_s=0.0)
    found = 0
    for k in range(0, 3600, 300):
        at = T0 + np.timedelta64(k, "s")
        res = snapshot_route(net, "Paris", "Moscow", at)
        if res is None:
            continue
        found += 1
        ranges = [
            np.linalg.norm(_position(const, stations, a, at) - _position(const, stations, b, at))
            for a, b in pairwise(res.path)
        ]
        rtt_ms = 2 * sum(ranges) / SPEED_OF_LIGHT_KM_S * 1e3
        assert 2 * res.arrival_s * 1e3 == pytest.approx(rtt_ms, abs=0.01)
    assert found >= 6


def _line_graph(contacts: list[Contact], n: int = 3, horizon: float = 1000.0) -> ContactGraph:
    return ContactGraph(n_nodes=n, contacts=contacts, horizon_s=horizon, processing_delay_s=0.0)


def test_store_and_forward_waits_on_a_satellite() -> None:
    """Ground 0 -> sat 1 open [10, 20] s; sat 1 -> ground 2 open [100, 130] s. 1 MB at
    8 Mbps takes 1 s per hop; ranges 300 km (1.0007 ms). Leaving 0 at t=0:
    depart 10, arrive 11.001; wait on the satellite; depart 100, arrive 101.001."""
    rng = 300.0
    owlt = rng / SPEED_OF_LIGHT_KM_S
    cg = _line_graph([Contact(0, 1, 10.0, 20.0, 8e6, rng), Contact(1, 2, 100.0, 130.0, 8e6, rng)])
    r = cg.earliest_arrival(0, 2, 0.0, 1e6)
    assert r is not None
    assert [h.src for h in r.hops] == [0, 1]
    assert r.hops[0].depart_s == 10.0 and r.hops[0].arrive_s == pytest.approx(11.0 + owlt)
    assert r.hops[1].depart_s == 100.0
    assert r.arrival_s == pytest.approx(101.0 + owlt)


def test_store_and_forward_prefers_a_later_but_faster_path() -> None:
    """Direct 0 -> 2 opens only at 500 s; the relay via 1 arrives at 101 s: take the relay."""
    cg = _line_graph(
        [
            Contact(0, 2, 500.0, 600.0, 8e6, 0.0),
            Contact(0, 1, 10.0, 20.0, 8e6, 0.0),
            Contact(1, 2, 100.0, 130.0, 8e6, 0.0),
        ]
    )
    r = cg.earliest_arrival(0, 2, 0.0, 1e6)
    assert r is not None and r.nodes() == [0, 1, 2] and r.arrival_s == pytest.approx(101.0)


def test_contact_volume_is_honoured_between_competing_bundles() -> None:
    """Contact 0 -> 1 lasts 10 s at 8 Mbps: 10 MB. A 6 MB bundle takes [0, 6] s; a second
    6 MB bundle cannot fit in the 4 s left and must use the later contact [50, 60] s."""
    cg = _line_graph([Contact(0, 1, 0.0, 10.0, 8e6, 0.0), Contact(0, 1, 50.0, 60.0, 8e6, 0.0)], n=2)
    first = cg.earliest_arrival(0, 1, 0.0, 6e6)
    second = cg.earliest_arrival(0, 1, 0.0, 6e6)
    assert first is not None and second is not None
    assert first.arrival_s == pytest.approx(6.0) and first.hops[0].contact == 0
    assert second.hops[0].contact == 1 and second.arrival_s == pytest.approx(56.0)
    assert cg.contacts[0].residual_bytes() == pytest.approx(4e6)
    # a small bundle still fits in the gap left on the first contact
    third = cg.earliest_arrival(0, 1, 0.0, 3e6)
    assert third is not None and third.hops[0].contact == 0
    assert third.hops[0].depart_s == pytest.approx(6.0)
    # without reservation nothing is booked
    probe = cg.earliest_arrival(0, 1, 0.0, 1e6, reserve=False)
    assert probe is not None and cg.contacts[0].residual_bytes() == pytest.approx(1e6)


def test_store_and_forward_rejects_bad_input() -> None:
    cg = _line_graph([Contact(0, 1, 0.0, 10.0, 8e6, 0.0)], n=2)
    with pytest.raises(InputError, match="outside the contact plan"):
        cg.earliest_arrival(0, 1, 5000.0, 1e6)
    with pytest.raises(InputError, match="bundle size"):
        cg.earliest_arrival(0, 1, 0.0, 0.0)


def test_unknown_node_suggests_close_names() -> None:
    net = Network(load_constellation("three-body-12"), load_stations("china"))
    with pytest.raises(InputError, match="did you mean Kashi"):
        net.node("Kashgar")


def test_route_on_snapshot_matches_networkx_single_pair() -> None:
    net = Network.build(load_constellation("starlink-550"), load_stations("top-100", 25.0), T0)
    snap = snapshot(net, satellite_ecef_km(net, np.array([T0]))[0], size_bytes=1500.0)
    a, b = net.node("Tokyo"), net.node("New-York")
    r = route(net, snap, a, b)
    assert r is not None
    ref = nx.shortest_path_length(_nx_graph(snap), a, net.sink(b), weight="weight")
    assert r.delay_s == pytest.approx(ref, abs=1e-12)
    # Tokyo-New York great circle is 10,850 km: no route can beat it at c (36.2 ms)
    assert r.delay_s * 1e3 > 36.2


def test_snapshot_edge_delays_use_the_link_models() -> None:
    """Every edge = range / c + processing + 8 B / rate, with the rate from the RF budgets
    (ground: the uplink's up, the downlink's down) and the optical model (laser, knee at
    1,000 km), computed independently here."""
    from starcompute import IslConfig
    from starcompute.links.budgets import RfLinkConfig, optical_isl_rate_bps, rf_link_budget

    rf, rf_up = RfLinkConfig.preset("x-band"), RfLinkConfig.preset("s-band-up")
    isl = IslConfig.default(knee_km=1000.0)
    stations = load_stations("china")
    net = Network.build(load_constellation("kuiper-630"), stations, T0, rf=rf, rf_up=rf_up, isl=isl)
    size = 1e6
    pos = satellite_ecef_km(net, np.array([T0]))[0]
    snap = snapshot(net, pos, size)
    coo, rng = snap.graph.tocoo(), snap.range_km.tocoo()
    ground_seen = 0
    for a, b, delay, r in zip(coo.row, coo.col, coo.data, rng.data, strict=True):
        if a < net.n_sat and b < net.n_sat:
            rate = optical_isl_rate_bps(np.array([r]), isl.rate_bps, isl.max_range_km, 1000.0)[0]
        else:
            sat = min(a, b)
            st = stations[(max(a, b) - net.n_sat) % len(stations)]
            from starcompute.links.geometry import sin_elevation

            el = np.degrees(
                np.arcsin(
                    sin_elevation(
                        pos[sat], stations_ecef_km([st])[0], np.array(_up(st.lat_deg, st.lon_deg))
                    )
                )
            )
            budget = rf_up if a >= net.n_sat else rf  # station -> satellite: the uplink's
            rate = rf_link_budget(
                np.array([r]), np.array([el]), st.lat_deg, st.lon_deg, budget
            ).rate_bps[0]
            ground_seen += 1
        expected = r / SPEED_OF_LIGHT_KM_S + net.processing_delay_s + 8 * size / rate
        assert delay == pytest.approx(expected, rel=1e-9)
    assert ground_seen > 0


def _up(lat_deg: float, lon_deg: float) -> tuple[float, float, float]:
    lat, lon = np.radians(lat_deg), np.radians(lon_deg)
    return (np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat))


def test_contact_plan_rates_from_the_rf_budget() -> None:
    from starcompute import contact_plan
    from starcompute.links.budgets import RfLinkConfig

    const, stations = load_constellation("three-body-12"), load_stations("china")
    nominal = contact_plan(const, stations, T0, 6 * 3600.0)
    x = contact_plan(const, stations, T0, 6 * 3600.0, rf=RfLinkConfig.preset("x-band"))
    assert np.all(nominal.ground.rate_bps == 220e6)
    assert len(x.ground) == len(nominal.ground)  # X-band closes on every pass above 10 deg
    # the preset spans ~0.2-0.9 Gbps between low elevations and zenith (tests/test_budgets.py);
    # a grazing pass averages less, because the link closes for only part of it
    assert x.ground.rate_bps.min() > 0 and x.ground.rate_bps.max() < 9e8
    assert np.median(x.ground.rate_bps) > 2e8
    high = x.ground.max_elevation_deg > 60
    assert x.ground.rate_bps[high].mean() > x.ground.rate_bps[~high].mean()
