"""Reference frames: TEME (SGP4 output) -> ECEF/ITRF -> geodetic, and back.

TEME -> PEF uses the IAU-1982 GMST rotation (Vallado et al. 2006, eq. C-5); PEF is
taken as ITRF, i.e. polar motion (< 0.5 arcsec, i.e. < 17 m at 7,000 km radius) is
ignored, and UT1 = UTC (see ``starcompute.times``).
"""

from __future__ import annotations

import numpy as np

from starcompute.orbits.constants import (
    ECC2_WGS84,
    FLATTENING_WGS84,
    RADIUS_EARTH_KM,
)
from starcompute.times import DatetimeArray, FloatArray, to_jd

_J2000_JD = 2451545.0


def gmst_rad(t: np.datetime64 | DatetimeArray) -> FloatArray:
    """Greenwich mean sidereal time (IAU 1982), radians in [0, 2 pi)."""
    jd, fr = to_jd(t)
    tut1 = ((jd - _J2000_JD) + fr) / 36525.0
    seconds = (
        67310.54841
        + (876600.0 * 3600.0 + 8640184.812866) * tut1
        + 0.093104 * tut1**2
        - 6.2e-6 * tut1**3
    )
    return np.mod(np.deg2rad(seconds / 240.0), 2.0 * np.pi)


def gmst_rate_rad_s(t: np.datetime64) -> float:
    """d(GMST)/dt at ``t`` (rad per UT second): the derivative of ``gmst_rad``'s series."""
    jd, fr = to_jd(t)
    tut1 = float(((jd - _J2000_JD) + fr) / 36525.0)
    seconds_per_century = (
        876600.0 * 3600.0 + 8640184.812866 + 2 * 0.093104 * tut1 - 3 * 6.2e-6 * tut1**2
    )
    return float(np.deg2rad(seconds_per_century / 240.0) / (36525.0 * 86400.0))


def rotate_z(vec: FloatArray, angle_rad: FloatArray) -> FloatArray:
    """Rotate the frame by ``angle_rad`` about z (R3): (..., 3) vectors, angle broadcast."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    x, y = vec[..., 0], vec[..., 1]
    return np.stack([c * x + s * y, -s * x + c * y, vec[..., 2]], axis=-1)


def teme_to_ecef(r_teme_km: FloatArray, t: np.datetime64 | DatetimeArray) -> FloatArray:
    """TEME positions (..., T, 3) at times ``t`` (T,) -> ECEF (ITRF, no polar motion)."""
    return rotate_z(r_teme_km, gmst_rad(t))


def geodetic_to_ecef(lat_deg: FloatArray, lon_deg: FloatArray, alt_m: FloatArray) -> FloatArray:
    """WGS-84 geodetic coordinates -> ECEF km, shape (..., 3)."""
    lat = np.deg2rad(np.asarray(lat_deg, dtype=np.float64))
    lon = np.deg2rad(np.asarray(lon_deg, dtype=np.float64))
    alt_km = np.asarray(alt_m, dtype=np.float64) / 1000.0
    n = RADIUS_EARTH_KM / np.sqrt(1.0 - ECC2_WGS84 * np.sin(lat) ** 2)
    x = (n + alt_km) * np.cos(lat) * np.cos(lon)
    y = (n + alt_km) * np.cos(lat) * np.sin(lon)
    z = (n * (1.0 - ECC2_WGS84) + alt_km) * np.sin(lat)
    return np.stack([x, y, z], axis=-1)


def up_vector(lat_deg: FloatArray, lon_deg: FloatArray) -> FloatArray:
    """Unit normal of the WGS-84 ellipsoid (local 'up'), shape (..., 3)."""
    lat = np.deg2rad(np.asarray(lat_deg, dtype=np.float64))
    lon = np.deg2rad(np.asarray(lon_deg, dtype=np.float64))
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


def ecef_to_geodetic(r_ecef_km: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """ECEF km (..., 3) -> (lat_deg, lon_deg, alt_km) on WGS-84 (Bowring, 2 iterations: < 1 mm)."""
    x, y, z = r_ecef_km[..., 0], r_ecef_km[..., 1], r_ecef_km[..., 2]
    a = RADIUS_EARTH_KM
    b = a * (1.0 - FLATTENING_WGS84)
    ep2 = (a * a - b * b) / (b * b)
    p = np.hypot(x, y)
    lon = np.arctan2(y, x)
    beta = np.arctan2(a * z, b * p)
    for _ in range(2):
        lat = np.arctan2(z + ep2 * b * np.sin(beta) ** 3, p - ECC2_WGS84 * a * np.cos(beta) ** 3)
        beta = np.arctan2((1.0 - FLATTENING_WGS84) * np.sin(lat), np.cos(lat))
    sin_lat = np.sin(lat)
    n = a / np.sqrt(1.0 - ECC2_WGS84 * sin_lat**2)
    alt = p * np.cos(lat) + (z + ECC2_WGS84 * n * sin_lat) * sin_lat - n
    return np.rad2deg(lat), np.rad2deg(lon), alt
