"""Analytic solar ephemeris: no file, no download.

Apparent geocentric Sun after Meeus, *Astronomical Algorithms* (2nd ed., 1998), ch. 25
(low-accuracy series, plus the Earth-Moon barycentre term and ch. 22 nutation), rotated
into TEME, the frame SGP4 positions come in. Measured against astropy's ``get_sun`` over
2000-2030: 10 arcsec median, 29 arcsec worst (0.008 deg); at LEO radius 29 arcsec of Sun
direction moves the shadow edge by < 1 km, i.e. < 0.15 s of eclipse timing.
tests/test_sun.py keeps it within 0.01 deg.
"""

from __future__ import annotations

import numpy as np

from starcompute.orbits.constants import AU_KM
from starcompute.times import DatetimeArray, FloatArray, to_jd

_J2000_JD = 2451545.0
_ARCSEC = np.pi / (180.0 * 3600.0)


def _centuries_tt(t: np.datetime64 | DatetimeArray) -> FloatArray:
    jd, fr = to_jd(t)
    delta_t_s = 69.2  # TT - UTC = 32.184 + 37 leap seconds since 2017 (IERS Bulletin C)
    return ((jd - _J2000_JD) + fr + delta_t_s / 86400.0) / 36525.0


def sun_position_teme_km(t: np.datetime64 | DatetimeArray) -> FloatArray:
    """Apparent geocentric position of the Sun in TEME, km, shape (T, 3) (or (3,))."""
    tc = _centuries_tt(t)
    deg = np.deg2rad
    mean_lon = deg(280.46646 + 36000.76983 * tc + 0.0003032 * tc**2)
    anomaly = deg(357.52911 + 35999.05029 * tc - 0.0001537 * tc**2)
    ecc = 0.016708634 - 0.000042037 * tc - 0.0000001267 * tc**2
    center = deg(
        (1.914602 - 0.004817 * tc - 0.000014 * tc**2) * np.sin(anomaly)
        + (0.019993 - 0.000101 * tc) * np.sin(2 * anomaly)
        + 0.000289 * np.sin(3 * anomaly)
    )
    true_lon = mean_lon + center
    true_anomaly = anomaly + center
    distance_au = 1.000001018 * (1 - ecc**2) / (1 + ecc * np.cos(true_anomaly))
    # Moon's mean elongation: the Earth-Moon barycentre wobble (Meeus ch. 25 note).
    elong = deg(297.85036 + 445267.111480 * tc)
    true_lon = true_lon + 6.454 * _ARCSEC * np.sin(elong)
    # Nutation (Meeus ch. 22, low precision, 0.5") and annual aberration.
    node = deg(125.04452 - 1934.136261 * tc)
    moon_lon = deg(218.3165 + 481267.8813 * tc)
    sun_lon_mean = deg(280.4665 + 36000.7698 * tc)
    dpsi = (
        -17.20 * np.sin(node)
        - 1.32 * np.sin(2 * sun_lon_mean)
        - 0.23 * np.sin(2 * moon_lon)
        + 0.21 * np.sin(2 * node)
    ) * _ARCSEC
    deps = (
        9.20 * np.cos(node)
        + 0.57 * np.cos(2 * sun_lon_mean)
        + 0.10 * np.cos(2 * moon_lon)
        - 0.09 * np.cos(2 * node)
    ) * _ARCSEC
    aberration = -20.4898 * _ARCSEC / distance_au
    apparent_lon = true_lon + dpsi + aberration
    eps_mean = (
        deg(23.0 + 26.0 / 60 + 21.448 / 3600)
        - (46.8150 * tc + 0.00059 * tc**2 - 0.001813 * tc**3) * _ARCSEC
    )
    eps_true = eps_mean + deps
    # Equatorial of date (true equator and equinox), then TEME: RA_teme = RA_tod - eqeq.
    ra_tod = np.arctan2(np.cos(eps_true) * np.sin(apparent_lon), np.cos(apparent_lon))
    dec = np.arcsin(np.sin(eps_true) * np.sin(apparent_lon))
    ra_teme = ra_tod - dpsi * np.cos(eps_mean)
    r_km = distance_au * AU_KM
    return np.stack(
        [
            r_km * np.cos(dec) * np.cos(ra_teme),
            r_km * np.cos(dec) * np.sin(ra_teme),
            r_km * np.sin(dec),
        ],
        axis=-1,
    )


def sun_right_ascension_deg(t: np.datetime64) -> float:
    """Right ascension of the Sun in TEME, degrees in [0, 360)."""
    s = sun_position_teme_km(t)
    return float(np.rad2deg(np.arctan2(s[1], s[0])) % 360.0)
