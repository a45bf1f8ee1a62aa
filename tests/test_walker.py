"""Walker shells against closed forms (Vallado, Fundamentals of Astrodynamics, 4th ed.):
mean altitude, nodal period with J2, RAAN spacing and drift, phasing, SSO inclination."""

from __future__ import annotations

import numpy as np
import pytest

from starcompute import InputError, WalkerShell, load_constellation, propagate, time_grid
from starcompute.orbits.constants import J2_WGS72, MU_WGS72_KM3_S2, RADIUS_WGS72_KM
from starcompute.orbits.constellation import _from_shells
from starcompute.orbits.walker import sun_synchronous_inclination_deg
from starcompute.times import parse_utc

EPOCH = parse_utc("2026-01-01T00:00:00Z")


def _node_crossings_s(r: np.ndarray, t_s: np.ndarray) -> np.ndarray:
    z = r[:, 2]
    k = np.flatnonzero((z[:-1] < 0) & (z[1:] >= 0))
    return t_s[k] - z[k] * (t_s[k + 1] - t_s[k]) / (z[k + 1] - z[k])


def _raan_deg(r: np.ndarray, v: np.ndarray) -> np.ndarray:
    h = np.cross(r, v)
    return np.degrees(np.arctan2(h[..., 0], -h[..., 1])) % 360.0


@pytest.mark.parametrize(("alt_km", "incl_deg"), [(550.0, 53.0), (630.0, 51.9), (500.0, 97.4)])
def test_nodal_period_matches_j2_closed_form(alt_km: float, incl_deg: float) -> None:
    """Nodal period T_N = T_K (1 - 3/2 J2 (R/a)^2 (3 - 4 sin^2 i)) to first order in J2
    (Vallado eq. 9-41 family); SGP4 short-period terms leave ~1 s of scatter."""
    const = _from_shells("w", [WalkerShell("W", alt_km, incl_deg, 1, 1, phasing=0)], EPOCH)
    eph = propagate(const, time_grid(EPOCH, 86400.0, 5.0))
    crossings = _node_crossings_s(eph.r_teme_km[0], eph.t_s)
    measured = np.diff(crossings).mean()
    a = RADIUS_WGS72_KM + alt_km
    kepler = 2 * np.pi * np.sqrt(a**3 / MU_WGS72_KM3_S2)
    nodal = kepler * (
        1
        - 1.5 * J2_WGS72 * (RADIUS_WGS72_KM / a) ** 2 * (3 - 4 * np.sin(np.radians(incl_deg)) ** 2)
    )
    assert measured == pytest.approx(nodal, abs=3.0)


def test_mean_altitude_and_raan_spacing_of_a_walker_delta() -> None:
    const = load_constellation("kuiper-630")
    eph = propagate(const, time_grid(EPOCH, 98 * 60.0, 20.0))
    radius = np.linalg.norm(eph.r_teme_km, axis=-1).mean(axis=1)  # orbit-averaged
    assert np.all(np.abs(radius - RADIUS_WGS72_KM - 630.0) < 3.0)  # km
    raan = _raan_deg(eph.r_teme_km[:, 0], eph.v_teme_km_s[:, 0])
    unit = np.exp(1j * np.radians(raan))
    plane_raan = np.degrees([np.angle(unit[const.plane == p].mean()) for p in range(34)])
    spacing = np.diff(np.unwrap(np.radians(plane_raan)))
    np.testing.assert_allclose(np.degrees(spacing), 360.0 / 34, atol=0.05)  # deg


def test_phasing_offsets_adjacent_planes_by_360_f_over_t() -> None:
    shell = WalkerShell("PH", 550.0, 53.0, planes=6, sats_per_plane=4, phasing=2)
    u = shell.argument_of_latitude_deg()
    np.testing.assert_allclose((u[1, 0] - u[0, 0]) % 360, 360.0 * 2 / 24)
    np.testing.assert_allclose(np.diff(u[0]) % 360, 90.0)


def test_sun_synchronous_inclination_and_drift() -> None:
    """Closed form for 500 km: i = 97.40 deg (Vallado table 11-2 gives 97.4 deg at 500 km);
    the propagated RAAN must drift 360 deg / 365.2422 d = 0.9856 deg/day eastward."""
    incl = sun_synchronous_inclination_deg(500.0)
    assert incl == pytest.approx(97.40, abs=0.02)
    const = _from_shells("s", [WalkerShell("S", 500.0, incl, 1, 1, phasing=0)], EPOCH)
    eph = propagate(const, time_grid(EPOCH, 10 * 86400.0, 600.0))
    raan = np.unwrap(np.radians(_raan_deg(eph.r_teme_km[0], eph.v_teme_km_s[0])))
    rate_deg_day = np.polyfit(eph.t_s / 86400.0, np.degrees(raan), 1)[0]
    assert rate_deg_day == pytest.approx(0.9856, abs=0.01)


def test_star_compute_2800_counts_and_roles() -> None:
    const = load_constellation("star-compute-2800")
    assert len(const) == 2800
    assert const.roles.count("inference") == 2400 and const.roles.count("training") == 400
    alt = const.mean_altitude_km()
    assert alt.min() >= 500.0 - 1e-6 and alt.max() <= 1000.0
    assert const.names[0] == "DD900T-P00-S00" and const.names[-1] == "LI500I-P19-S39"


def test_satellite_names_encode_shell_plane_slot() -> None:
    const = load_constellation("kuiper-630")
    i = const.index("KUIPER630-P03-S17")
    assert (const.plane[i], const.slot[i]) == (3, 17)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"altitude_km": 50.0}, "altitude_km"),
        ({"inclination_deg": 200.0}, "inclination_deg"),
        ({"phasing": 9}, "phasing"),
        ({"pattern": "rosette"}, "pattern"),
        ({"role": "mining"}, "role"),
    ],
)
def test_bad_shells_raise_input_error(kwargs: dict[str, object], message: str) -> None:
    spec: dict[str, object] = {
        "name": "X",
        "altitude_km": 550.0,
        "inclination_deg": 53.0,
        "planes": 4,
        "sats_per_plane": 4,
        "phasing": 1,
    }
    spec.update(kwargs)
    with pytest.raises(InputError, match=message):
        WalkerShell(**spec)  # type: ignore[arg-type]
