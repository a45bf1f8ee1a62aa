"""The network at an instant: who can talk to whom at time t, and at what delay.

Nodes are the satellites (0..N-1) and the ground stations. Without ground-station
relays each station is two nodes, an *uplink* node (edges out to the satellites it
sees) and a *downlink* node (edges in from them), so no path can pass through a
station; with relays a station is one node with edges both ways, as in Hypatia's
``gs_relay`` option. Laser links are up whenever in range and clear of the Earth
plus the atmosphere margin (acquisition is a temporal notion, honoured by
store-and-forward routing over the contact plan).

Edge weight = propagation delay (range / c) + per-hop processing delay
+ serialization delay of the message at the link's rate. Laser rates follow the optical
model of ``links.budgets`` (full rate to the knee, then ~1/range^2); ground links use
their nominal rates (``ground_rate_bps`` down, ``uplink_rate_bps`` up), or with an ``rf``
(downlink) / ``rf_up`` (uplink) config the DVB-S2 link budget at that instant, and a
direction on which no MODCOD closes is left out.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_array

from starcompute.errors import InputError
from starcompute.ground.stations import GroundStation, stations_ecef_km, stations_up
from starcompute.links.budgets import (
    RfLinkConfig,
    default_processing_delay_s,
    optical_isl_rate_bps,
    rf_link_budget,
)
from starcompute.links.config import (
    IslConfig,
    default_ground_rate_bps,
    default_uplink_rate_bps,
)
from starcompute.links.geometry import ray_clearance_km
from starcompute.links.topology import plus_grid
from starcompute.orbits.constants import SPEED_OF_LIGHT_KM_S
from starcompute.orbits.constellation import Constellation
from starcompute.orbits.frames import teme_to_ecef
from starcompute.orbits.propagate import propagate
from starcompute.times import DatetimeArray, FloatArray

IntArray = npt.NDArray[np.int64]


def lookup_node(names: list[str], name: str) -> int:
    """Index of ``name``; an unknown name gets an InputError suggesting the closest ones."""
    try:
        return names.index(name)
    except ValueError:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise InputError(f"unknown node {name!r}: give a satellite or station name{hint}") from None


@dataclass(slots=True)
class Network:
    """Everything routing needs that does not change with time."""

    const: Constellation
    stations: list[GroundStation]
    isl: IslConfig = field(default_factory=IslConfig.default)
    ground_relays: bool = False
    processing_delay_s: float = field(default_factory=default_processing_delay_s)
    ground_rate_bps: float = field(default_factory=default_ground_rate_bps)  # downlink
    rf: RfLinkConfig | None = None  # downlink budget
    uplink_rate_bps: float = field(default_factory=default_uplink_rate_bps)
    rf_up: RfLinkConfig | None = None  # uplink budget
    links: IntArray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    _station_ecef: FloatArray = field(init=False)
    _station_up: FloatArray = field(init=False)
    _sin_mask: FloatArray = field(init=False)

    def __post_init__(self) -> None:
        if not self.stations:
            raise InputError("routing needs at least one ground station")
        for rf, direction in ((self.rf, "down"), (self.rf_up, "up")):
            if rf is not None and rf.direction != direction:
                raise InputError(f"RF preset {rf.band!r} is not a {direction}link")
        if not self.processing_delay_s >= 0:
            raise InputError(f"processing delay must be >= 0 s, got {self.processing_delay_s}")
        clash = set(self.const.names) & {s.name for s in self.stations}
        if clash:
            raise InputError(f"names used by both a satellite and a station: {sorted(clash)[:3]}")
        self._station_ecef = stations_ecef_km(self.stations)
        self._station_up = stations_up(self.stations)
        self._sin_mask = np.sin(np.radians([s.min_elevation_deg for s in self.stations]))

    @classmethod
    def build(
        cls,
        const: Constellation,
        stations: list[GroundStation],
        at: np.datetime64,
        **kwargs: object,
    ) -> Network:
        """A network whose +grid topology is taken from the states at ``at``."""
        net = cls(const, stations, **kwargs)  # type: ignore[arg-type]
        eph = propagate(const, np.array([at], dtype="datetime64[ns]"))
        net.links = plus_grid(const, eph.r_teme_km[:, 0], eph.v_teme_km_s[:, 0], net.isl.terminals)
        return net

    @property
    def n_sat(self) -> int:
        return len(self.const)

    @property
    def n_nodes(self) -> int:
        return self.n_sat + len(self.stations) * (1 if self.ground_relays else 2)

    def node_names(self) -> list[str]:
        return list(self.const.names) + [s.name for s in self.stations]

    def node(self, name: str) -> int:
        """Node index of a satellite or station name (uplink node for a station)."""
        return lookup_node(self.node_names(), name)

    def sink(self, node: int) -> int:
        """The node a path to ``node`` ends at (a station's downlink node without relays)."""
        if node < self.n_sat or self.ground_relays:
            return node
        return node + len(self.stations)

    def name_of(self, node: int) -> str:
        if node >= self.n_sat + len(self.stations):
            node -= len(self.stations)
        return self.node_names()[node]


@dataclass(slots=True)
class Snapshot:
    """The directed graph of one instant; edges carry delay and range."""

    graph: csr_array  # delay in seconds (explicit zeros are not used: delays are > 0)
    range_km: csr_array
    n_isl_up: int
    n_ground_up: int


def satellite_ecef_km(net: Network, times: DatetimeArray) -> FloatArray:
    """(T, N, 3) ECEF positions (NaN where SGP4 fails) at the given times."""
    eph = propagate(net.const, times)
    return np.transpose(teme_to_ecef(eph.r_teme_km, eph.times), (1, 0, 2))


def snapshot(
    net: Network,
    r_ecef_km: FloatArray,
    size_bytes: float = 0.0,
    *,
    tracked: npt.NDArray[np.bool_] | None = None,
) -> Snapshot:
    """The graph at one instant from satellite ECEF positions (N, 3); ``tracked`` (S, N):
    the only station-satellite pairs with a ground link (a finite ground segment's
    antennas), default every pair in view."""
    src, dst, rng, rate = _isl_edges(net, r_ecef_km)
    g_src, g_dst, g_rng, g_rate = _ground_edges(net, r_ecef_km, tracked)
    n_isl = len(src) // 2
    src = np.concatenate([src, g_src])
    dst = np.concatenate([dst, g_dst])
    rng = np.concatenate([rng, g_rng])
    rate = np.concatenate([rate, g_rate])
    delay = rng / SPEED_OF_LIGHT_KM_S + net.processing_delay_s + 8.0 * size_bytes / rate
    shape = (net.n_nodes, net.n_nodes)
    return Snapshot(
        csr_array((delay, (src, dst)), shape=shape),
        csr_array((rng, (src, dst)), shape=shape),
        n_isl,
        len(g_src),
    )


def _isl_edges(net: Network, r: FloatArray) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
    a, b = net.links[:, 0], net.links[:, 1]
    ra, rb = r[a], r[b]
    dist = np.linalg.norm(ra - rb, axis=1)
    up = (dist <= net.isl.max_range_km) & (ray_clearance_km(ra, rb) >= net.isl.atmosphere_margin_km)
    a, b, dist = a[up], b[up], dist[up]
    cfg = net.isl
    rate = optical_isl_rate_bps(dist, cfg.rate_bps, cfg.max_range_km, cfg.knee_km)
    return np.r_[a, b], np.r_[b, a], np.r_[dist, dist], np.r_[rate, rate]


def station_view(net: Network, r: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(S, N) slant range (km) and sine of the elevation of every satellite from every
    station, from satellite ECEF positions (N, 3)."""
    d = r[None, :, :] - net._station_ecef[:, None, :]  # (S, N, 3)
    rng = np.linalg.norm(d, axis=2)
    return rng, np.einsum("snk,sk->sn", d, net._station_up) / rng


def in_view(net: Network, r: FloatArray) -> npt.NDArray[np.bool_]:
    """(..., S, N): each satellite above each station's minimum elevation, from satellite
    ECEF positions (..., N, 3) (matrix products: fast over many instants at once)."""
    st, up = net._station_ecef, net._station_up  # (S, 3)
    r_up = r @ up.T - np.einsum("sk,sk->s", st, up)  # (..., N, S): (r - st) . up
    rng2 = np.einsum("...nk,...nk->...n", r, r)[..., None] - 2.0 * (r @ st.T)
    rng2 += np.einsum("sk,sk->s", st, st)  # |r - st|^2
    ok = r_up >= net._sin_mask * np.sqrt(np.maximum(rng2, 0.0))
    return np.swapaxes(ok, -1, -2)


def _ground_edges(
    net: Network, r: FloatArray, tracked: npt.NDArray[np.bool_] | None
) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
    """Edges station -> satellite (uplink rate) and satellite -> station (downlink rate)
    of every pair in view (and tracked), each direction only where its budget closes."""
    rng, sin_el = station_view(net, r)
    ok = sin_el >= net._sin_mask[:, None]
    sta, sat = np.nonzero(ok if tracked is None else ok & tracked)
    dist = rng[sta, sat]
    down = _rates(net, net.rf, net.ground_rate_bps, sta, sat, dist, sin_el)
    up = _rates(net, net.rf_up, net.uplink_rate_bps, sta, sat, dist, sin_el)
    up_node = net.n_sat + sta
    down_node = up_node if net.ground_relays else up_node + len(net.stations)
    u, d = up > 0, down > 0
    return (
        np.r_[up_node[u], sat[d]],
        np.r_[sat[u], down_node[d]],
        np.r_[dist[u], dist[d]],
        np.r_[up[u], down[d]],
    )


def _rates(
    net: Network,
    rf: RfLinkConfig | None,
    nominal_bps: float,
    sta: IntArray,
    sat: IntArray,
    dist: FloatArray,
    sin_el: FloatArray,
) -> FloatArray:
    """Rate of each (station, satellite) link in one direction: nominal, or its budget."""
    rate = np.full(len(sta), float(nominal_bps))
    if rf is None:
        return rate
    for i in np.unique(sta):
        k = sta == i
        el = np.degrees(np.arcsin(sin_el[i, sat[k]]))
        st = net.stations[i]
        rate[k] = rf_link_budget(dist[k], el, st.lat_deg, st.lon_deg, rf).rate_bps
    return rate
