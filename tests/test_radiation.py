"""The LEO radiation model (spacecraft/radiation.py): shape, calibration and inputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from starcompute.errors import InputError
from starcompute.orbits.walker import sun_synchronous_inclination_deg
from starcompute.spacecraft.radiation import (
    RadiationConfig,
    annual_dose_rad_si,
    dose_rate_rad_si_per_day,
    expected_seu_per_gb,
    geomagnetic_lat_deg,
    orbit_average_flux,
    relative_flux,
    seu_rate_per_bit_per_day,
)

CFG = RadiationConfig.default()


def _ground_track(incl_deg: float, n_u: int = 720, n_node: int = 72) -> tuple[np.ndarray, ...]:
    """An independent sampling of a circular orbit: (lat, lon) in degrees, (n_u * n_node,).

    Unit vector of the satellite = R3(-node) R1(-incl) (cos u, sin u, 0); offsets differ
    from the module's grid on purpose.
    """
    u = np.arange(n_u) * (2.0 * np.pi / n_u)
    node = (np.arange(n_node) + 0.25) * (2.0 * np.pi / n_node)
    u, node = np.meshgrid(u, node, indexing="ij")
    i = np.deg2rad(incl_deg)
    x = np.cos(node) * np.cos(u) - np.sin(node) * np.cos(i) * np.sin(u)
    y = np.sin(node) * np.cos(u) + np.cos(node) * np.cos(i) * np.sin(u)
    z = np.sin(i) * np.sin(u)
    return np.rad2deg(np.arcsin(z)).ravel(), np.rad2deg(np.arctan2(y, x)).ravel()


def _geographic(mlat_deg: float, mlon_deg: float) -> tuple[float, float]:
    """Geomagnetic (centred dipole, IGRF-13 2020 pole) -> geographic lat/lon, degrees."""
    t = np.deg2rad(90.0 - CFG.dipole_pole_lat_deg)
    p = np.deg2rad(CFG.dipole_pole_lon_deg)
    m = np.deg2rad([mlat_deg, mlon_deg])
    v = np.array([np.cos(m[0]) * np.cos(m[1]), np.cos(m[0]) * np.sin(m[1]), np.sin(m[0])])
    ry = np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]])
    rz = np.array([[np.cos(p), -np.sin(p), 0], [np.sin(p), np.cos(p), 0], [0, 0, 1]])
    g = rz @ ry @ v
    return float(np.rad2deg(np.arcsin(g[2]))), float(np.rad2deg(np.arctan2(g[1], g[0])))


def test_saa_peak_at_configured_centre() -> None:
    """SAA flux maximum near 27 S, 45 W at ~500 km in the 2020s (assumed preset; RXTE at
    ~540 km, Fürst et al. 2009, EPSL 281, 125, places it over the South Atlantic/Brazil)."""
    lat, lon = np.meshgrid(np.arange(-89.5, 90, 1.0), np.arange(-180, 180, 1.0), indexing="ij")
    flux = relative_flux(lat, lon, 500.0)
    k = np.unravel_index(np.argmax(flux), flux.shape)
    assert abs(lat[k] - CFG.saa_center_lat_deg) < 3.0
    assert abs(lon[k] - CFG.saa_center_lon_deg) < 3.0
    assert flux[k] == pytest.approx(CFG.saa_peak_factor, rel=0.02)


def test_background_over_europe_and_china() -> None:
    """Away from the SAA and the horns the flux is the GCR background (~1): central Europe
    (~45-55 deg geomagnetic, IGRF-13) and China (~20-30 deg) at 500 km."""
    europe = relative_flux([40.4, 41.9, 48.9], [-3.7, 12.5, 2.3], 500.0)  # Madrid, Rome, Paris
    china = relative_flux([39.9, 30.7, 22.5], [116.4, 104.1, 114.1], 500.0)  # Beijing, ...
    assert np.all((europe >= 1.0) & (europe < 1.3))
    np.testing.assert_allclose(china, 1.0, atol=0.01)


def test_saa_stronger_higher_up() -> None:
    """Inner-belt proton flux rises with altitude in LEO (assumed scale height 150 km)."""
    f = relative_flux(-27.0, -45.0, [500.0, 650.0, 800.0])
    assert f[0] < f[1] < f[2]
    assert f[2] / f[0] > 5.0


def test_horns_and_symmetry() -> None:
    """Outer-belt horns near |geomagnetic latitude| 65 deg (assumed); centred dipole with
    the IGRF-13 2020.0 pole, 80.65 N 72.68 W (Alken et al. 2021, EPS 73, 49, Table 4)."""
    north65, north40, south65 = _geographic(65, 210), _geographic(40, 210), _geographic(-65, 210)
    assert geomagnetic_lat_deg(*north65) == pytest.approx(65.0, abs=1e-9)
    assert geomagnetic_lat_deg(*south65) == pytest.approx(-65.0, abs=1e-9)
    f65, f40, fs65 = (float(relative_flux(*p, 500.0)) for p in (north65, north40, south65))
    assert f65 == pytest.approx(CFG.horn_peak_factor, rel=1e-3)
    assert f65 > f40
    assert fs65 == pytest.approx(f65, rel=1e-6)  # mlon 210: south of Australia, far from the SAA
    no_saa = dataclasses.replace(CFG, saa_peak_factor=1.0)
    mlat = np.linspace(0.0, 89.0, 90)
    pts = [(_geographic(m, mlon), _geographic(-m, mlon)) for m in mlat for mlon in (0, 120, 240)]
    n = relative_flux([p[0][0] for p in pts], [p[0][1] for p in pts], 700.0, no_saa)
    s = relative_flux([p[1][0] for p in pts], [p[1][1] for p in pts], 700.0, no_saa)
    np.testing.assert_allclose(n, s, rtol=1e-12)


def test_seu_calibration_alsat1() -> None:
    """Orbit-averaged SEU rate on Alsat-1's orbit (~686 km SSO, 98.2 deg) equals the
    measured 4e-7 /bit/day (Alsat-1 SRAM, 98.6 % single-bit; ../shared/facts.md)."""
    lat, lon = _ground_track(CFG.seu_reference_incl_deg)
    rate = seu_rate_per_bit_per_day(lat, lon, CFG.seu_reference_alt_km)
    assert rate.mean() == pytest.approx(4e-7, rel=1e-6)


def test_dose_calibration_suncatcher() -> None:
    """Orbit-averaged dose at 650 km dawn-dusk SSO x 365.25 = 150 rad(Si)/yr: ~750 rad(Si)
    shielded over 5 years (Google Project Suncatcher, arXiv 2511.19468)."""
    lat, lon = _ground_track(CFG.dose_reference_incl_deg)
    rate = dose_rate_rad_si_per_day(lat, lon, 650.0)
    assert annual_dose_rad_si(rate) == pytest.approx(150.0, rel=1e-6)


def test_orbit_average_monotonic_in_altitude_and_inclination() -> None:
    """Higher SSO orbits see more of the SAA (flux rising with altitude, assumed 150 km
    scale height); a 40 deg orbit crosses the SAA core (27 S) that a 0 deg one only clips."""
    alts = np.array([500.0, 650.0, 1000.0])
    incl = np.array([sun_synchronous_inclination_deg(a) for a in alts])
    avg = orbit_average_flux(alts, incl)
    assert avg.shape == (3,)
    assert avg[0] < avg[1] < avg[2]
    equatorial, mid = orbit_average_flux(500.0, [0.0, 40.0])
    assert 1.0 < equatorial < mid  # the 0 deg orbit still clips the SAA's northern edge
    assert orbit_average_flux([[500.0], [800.0]], [0.0, 40.0]).shape == (2, 2)


def test_expected_seu_per_gb_alsat1() -> None:
    """1 GB (8e9 bits) for one day on Alsat-1's orbit: 4e-7 x 8e9 = 3,200 upsets
    (Alsat-1 SRAM baseline, ../shared/facts.md)."""
    lat, lon = _ground_track(CFG.seu_reference_incl_deg)
    rate = seu_rate_per_bit_per_day(lat, lon, CFG.seu_reference_alt_km)
    dt_s = 86_400.0 / rate.size
    assert expected_seu_per_gb(rate, dt_s) == pytest.approx(3200.0, rel=1e-6)
    per_sat = expected_seu_per_gb(np.stack([rate, 2 * rate]), dt_s)
    np.testing.assert_allclose(per_sat, [3200.0, 6400.0], rtol=1e-6)
    with pytest.raises(InputError, match="dt_s"):
        expected_seu_per_gb(rate, 0.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("saa_sigma_lat_deg", 0.0),
        ("saa_sigma_lon_deg", -5.0),
        ("saa_scale_height_km", 0.0),
        ("saa_peak_factor", 0.5),
        ("horn_sigma_mlat_deg", float("nan")),
        ("seu_baseline_per_bit_per_day", 0.0),
        ("dose_reference_rad_si_per_year", -1.0),
        ("seu_reference_incl_deg", 181.0),
        ("saa_center_lat_deg", 95.0),
    ],
)
def test_bad_config_raises(field: str, value: float) -> None:
    """Bad parameters raise InputError naming the field (project convention,
    docs/architecture.md)."""
    with pytest.raises(InputError, match=field):
        RadiationConfig.default(**{field: value})


def test_nan_wrap_and_bad_positions() -> None:
    """NaN positions give NaN; longitudes wrap modulo 360 (the SAA Gaussian uses the
    shortest longitude difference); latitudes outside [-90, 90] are refused."""
    f = relative_flux([np.nan, -27.0, -27.0], [-45.0, np.nan, -45.0], [500.0, 500.0, np.nan])
    assert np.all(np.isnan(f))
    assert np.isnan(seu_rate_per_bit_per_day(np.nan, 0.0, 500.0))
    np.testing.assert_allclose(
        relative_flux(-27.0, [179.0, -150.0, 135.0], 500.0),
        relative_flux(-27.0, [-181.0, 210.0, -225.0], 500.0),
        rtol=1e-12,
    )
    np.testing.assert_allclose(relative_flux(-27.0, 315.0, 500.0), CFG.saa_peak_factor)
    with pytest.raises(InputError, match="lat_deg"):
        relative_flux(91.0, 0.0, 500.0)
    with pytest.raises(InputError, match="incl_deg"):
        orbit_average_flux(500.0, -1.0)
    with pytest.raises(InputError, match="unknown radiation parameter"):
        RadiationConfig.default(saa_width=3.0)


def test_saa_drift_epoch() -> None:
    """The SAA drifts west ~0.3 deg/yr (RXTE, Fürst et al. 2009, EPSL 281, 125); here
    only as an explicit move of the fixed epoch centre."""
    later = CFG.with_saa_epoch(CFG.saa_epoch_year + 10.0)
    assert later.saa_center_lon_deg == pytest.approx(CFG.saa_center_lon_deg - 3.0)
    assert later.saa_center_lat_deg == CFG.saa_center_lat_deg
