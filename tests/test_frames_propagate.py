"""Frames vs skyfield's TEME->ITRS rotation and WGS-84 geodesy; propagation errors and
Hermite interpolation vs direct SGP4."""

from __future__ import annotations

import numpy as np
import pytest
from sgp4.api import Satrec

from starcompute import InputError, ecef_to_geodetic, load_constellation, propagate, time_grid
from starcompute.orbits.constellation import from_element_sets
from starcompute.orbits.frames import geodetic_to_ecef, teme_to_ecef
from starcompute.orbits.propagate import iter_propagate
from starcompute.orbits.tle import parse_tle
from starcompute.times import from_offsets, parse_utc, to_jd

from conftest import ISS_TLE


def test_teme_to_ecef_matches_skyfield_rotation() -> None:
    """skyfield.sgp4lib.TEME_to_ITRF with the same UT1 (= UTC) and no polar motion: the
    remaining difference is GMST series rounding, well below 1 m at LEO radius."""
    from skyfield.sgp4lib import TEME_to_ITRF

    times = parse_utc("2025-11-20T00:00:00Z") + (np.arange(0, 86400, 977) * 10**9).astype(
        "timedelta64[ns]"
    )
    r = np.tile([[6778.0, 1200.0, 300.0]], (len(times), 1))
    ours = teme_to_ecef(r, times)
    jd, fr = to_jd(times)
    ref, _ = TEME_to_ITRF(jd, r.T, np.zeros_like(r.T), 0.0, 0.0, fr)
    assert np.abs(ours - ref.T).max() < 1e-3  # km


def test_subpoint_matches_skyfield_wgs84() -> None:
    """ISS subpoint vs skyfield's wgs84.geographic_position_of (real UT1): < 0.01 deg, < 50 m."""
    from skyfield.api import EarthSatellite, load, wgs84

    lines = ISS_TLE.splitlines()
    ts = load.timescale(builtin=True)
    sat = EarthSatellite(lines[1], lines[2], lines[0], ts)
    rec = parse_tle(ISS_TLE)[0]
    const = from_element_sets("iss", [(rec.name, rec.satrec())])
    start = parse_utc("2008-09-20T12:00:00Z")
    eph = propagate(const, from_offsets(start, np.arange(0, 6000, 600.0)))
    lat, lon, alt = ecef_to_geodetic(eph.r_ecef_km()[0])
    t = ts.utc(2008, 9, 20, 12, 0, np.arange(0, 6000, 600.0))
    geo = wgs84.geographic_position_of(sat.at(t))
    assert np.abs(lat - geo.latitude.degrees).max() < 0.01
    dlon = (lon - geo.longitude.degrees + 180) % 360 - 180
    assert np.abs(dlon).max() < 0.01  # UT1-UTC of 2008 (~-0.5 s) is 0.002 deg
    assert np.abs(alt - geo.elevation.km).max() < 0.05


def test_geodetic_round_trip() -> None:
    rng = np.random.default_rng(1)
    lat, lon, alt_m = (
        rng.uniform(-90, 90, 500),
        rng.uniform(-180, 180, 500),
        rng.uniform(-400, 2e6, 500),
    )
    lat2, lon2, alt2_km = ecef_to_geodetic(geodetic_to_ecef(lat, lon, alt_m))
    np.testing.assert_allclose(lat2, lat, atol=1e-9)
    np.testing.assert_allclose((lon2 - lon + 180) % 360 - 180, 0, atol=1e-9)
    np.testing.assert_allclose(alt2_km * 1000, alt_m, atol=1e-3)  # 1 mm


def test_hermite_interpolation_within_1m_of_sgp4() -> None:
    const = load_constellation("three-body-12")
    start = parse_utc("2025-11-20T00:00:00Z")
    eph = propagate(const, time_grid(start, 3 * 3600.0, 60.0))
    rng = np.random.default_rng(0)
    sat, t_s = rng.integers(0, 12, 300), rng.uniform(0, 3 * 3600.0, 300)
    r, v = eph.state_at(sat, t_s)
    jd, fr = to_jd(from_offsets(start, t_s))
    ref = np.array([const.satrecs[s].sgp4(j, f)[1] for s, j, f in zip(sat, jd, fr, strict=True)])
    ref_v = np.array([const.satrecs[s].sgp4(j, f)[2] for s, j, f in zip(sat, jd, fr, strict=True)])
    assert np.linalg.norm(r - ref, axis=1).max() < 1e-3  # km
    assert np.linalg.norm(v - ref_v, axis=1).max() < 1e-3  # km/s


def test_decayed_satellite_is_reported_without_aborting_the_rest() -> None:
    good = Satrec.twoline2rv(*ISS_TLE.splitlines()[1:])
    decayed = Satrec.twoline2rv(*ISS_TLE.splitlines()[1:])
    # a mean motion of 17.5 rev/day with heavy drag decays within days
    lines = ISS_TLE.splitlines()
    l2 = lines[2][:52] + "17.50000000" + lines[2][63:68]
    from starcompute.orbits.tle import checksum

    l2 = l2 + str(checksum(l2 + "0"))
    l1 = lines[1][:53] + "99999-1" + lines[1][60:68]
    l1 = l1 + str(checksum(l1 + "0"))
    decayed = Satrec.twoline2rv(l1, l2)
    const = from_element_sets("mix", [("ok", good), ("decaying", decayed)])
    times = time_grid(parse_utc("2008-09-20T00:00:00Z"), 60 * 86400.0, 3600.0)
    eph = propagate(const, times)
    assert np.all(np.isfinite(eph.r_teme_km[0]))
    assert eph.error[1].any() and np.isnan(eph.r_teme_km[1][eph.error[1] > 0]).all()
    failures = eph.failures(const.names)
    assert list(failures) == ["decaying"]


def test_iter_propagate_chunks_concatenate_to_the_whole() -> None:
    const = load_constellation("three-body-12")
    times = time_grid(parse_utc("2025-11-20T00:00:00Z"), 7200.0, 10.0)
    whole = propagate(const, times)
    chunks = list(iter_propagate(const, times, chunk_bytes=12 * 49 * 100))
    assert len(chunks) > 1
    np.testing.assert_array_equal(np.concatenate([c.r_teme_km for c in chunks], 1), whole.r_teme_km)


def test_propagate_refuses_oversized_requests() -> None:
    const = load_constellation("star-compute-2800")
    times = time_grid(parse_utc("2025-11-20T00:00:00Z"), 86400.0, 1.0)
    with pytest.raises(InputError, match="iter_propagate"):
        propagate(const, times)
