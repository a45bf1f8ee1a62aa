"""Earth's shadow on each satellite: conical umbra/penumbra, sunlit fraction, beta angle.

Geometry after Montenbruck & Gill, *Satellite Orbits* (2000), sec. 3.4.2: seen from the
satellite, the Sun's apparent radius a, the Earth's b (a sphere of the WGS-84 equatorial
radius) and their separation c give: umbra if c < b - a, penumbra if c < a + b.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from starcompute.orbits.constants import RADIUS_EARTH_KM, RADIUS_SUN_KM
from starcompute.orbits.events import find_windows
from starcompute.orbits.propagate import Ephemeris
from starcompute.orbits.sun import sun_position_teme_km
from starcompute.times import FloatArray, from_offsets

IntArray = npt.NDArray[np.int64]
_NEAR_MISS_RAD = np.deg2rad(2.0)


def shadow_angles(r_sat_km: FloatArray, r_sun_km: FloatArray) -> tuple[FloatArray, ...]:
    """Sun and Earth apparent radii and their separation seen from the satellite, radians."""
    to_sun = r_sun_km - r_sat_km
    d_sun = np.linalg.norm(to_sun, axis=-1)
    d_earth = np.linalg.norm(r_sat_km, axis=-1)
    a = np.arcsin(np.clip(RADIUS_SUN_KM / d_sun, -1.0, 1.0))
    b = np.arcsin(np.clip(RADIUS_EARTH_KM / d_earth, -1.0, 1.0))
    cos_c = -np.sum(r_sat_km * to_sun, axis=-1) / (d_earth * d_sun)
    c = np.arccos(np.clip(cos_c, -1.0, 1.0))
    return a, b, c


def umbra_margin_rad(r_sat_km: FloatArray, r_sun_km: FloatArray) -> FloatArray:
    """Positive inside the umbra (b - a - c)."""
    a, b, c = shadow_angles(r_sat_km, r_sun_km)
    return b - a - c


def penumbra_margin_rad(r_sat_km: FloatArray, r_sun_km: FloatArray) -> FloatArray:
    """Positive inside the penumbra or umbra (a + b - c)."""
    a, b, c = shadow_angles(r_sat_km, r_sun_km)
    return a + b - c


def sunlit_fraction(r_sat_km: FloatArray, r_sun_km: FloatArray) -> FloatArray:
    """Fraction of the solar disc visible from the satellite (1 sunlit, 0 umbra)."""
    return sunlit_fraction_from_angles(*shadow_angles(r_sat_km, r_sun_km))


def sunlit_fraction_fast(
    r_norm_km: FloatArray, r_dot_sun_hat_km: FloatArray, sun_distance_km: FloatArray
) -> FloatArray:
    """:func:`sunlit_fraction` from |r|, r . s_hat and |s| (one norm, no vector temporaries).

    Uses |s - r| = |s| - r . s_hat, exact to (|r| / |s|)^2 ~ 2e-9 in LEO.
    """
    d_sun = sun_distance_km - r_dot_sun_hat_km
    a = np.arcsin(RADIUS_SUN_KM / d_sun)
    b = np.arcsin(np.clip(RADIUS_EARTH_KM / r_norm_km, -1.0, 1.0))
    cos_c = (r_norm_km**2 - r_dot_sun_hat_km * sun_distance_km) / (r_norm_km * d_sun)
    c = np.arccos(np.clip(cos_c, -1.0, 1.0))
    return sunlit_fraction_from_angles(a, b, c)


def sunlit_fraction_from_angles(a: FloatArray, b: FloatArray, c: FloatArray) -> FloatArray:
    """Visible fraction given the apparent radii (a Sun, b Earth) and separation c.

    Most samples are fully lit or in umbra; only the penumbral ones pay for the
    circle-overlap area (the ``_disc_overlap`` of the two apparent discs)."""
    frac = np.where(c >= a + b, 1.0, 0.0)
    partial = (c < a + b) & (c > b - a)
    if np.any(partial):
        frac[partial] = _disc_overlap(a[partial], b[partial], c[partial])
    return np.asarray(frac)


def _disc_overlap(a: FloatArray, b: FloatArray, c: FloatArray) -> FloatArray:
    """Visible fraction of a disc of radius a behind a disc of radius b, centres c apart."""
    a2, b2, c2 = a * a, b * b, np.maximum(c, 1e-12) ** 2
    x = np.clip((c2 + a2 - b2) / (2.0 * np.maximum(c, 1e-12)), -a, a)
    y = np.sqrt(np.maximum(a2 - x * x, 0.0))
    overlap = (
        a2 * np.arccos(np.clip(x / a, -1.0, 1.0))
        + b2 * np.arccos(np.clip((c - x) / b, -1.0, 1.0))
        - c * y
    )
    return np.asarray(np.clip(1.0 - overlap / (np.pi * a2), 0.0, 1.0))


def beta_angle_deg(
    r_teme_km: FloatArray, v_teme_km_s: FloatArray, r_sun_km: FloatArray
) -> FloatArray:
    """Angle between the orbit plane and the Sun direction, degrees (+ on the h side)."""
    h = np.cross(r_teme_km, v_teme_km_s)
    h /= np.linalg.norm(h, axis=-1, keepdims=True)
    s = r_sun_km / np.linalg.norm(r_sun_km, axis=-1, keepdims=True)
    return np.asarray(np.degrees(np.arcsin(np.clip(np.sum(h * s, axis=-1), -1.0, 1.0))))


@dataclass(slots=True)
class Eclipses:
    """Shadow intervals: ``kind`` 'umbra' or 'penumbra' (the partial phases either side)."""

    satellite: IntArray
    start_s: FloatArray
    end_s: FloatArray
    kind: list[str]
    beta_deg: FloatArray  # Sun's angle to the orbit plane at the interval's start

    def __len__(self) -> int:
        return len(self.satellite)


def _margin_windows(eph: Ephemeris, margin_fn: object) -> tuple[IntArray, FloatArray, FloatArray]:
    fn = margin_fn  # umbra_margin_rad or penumbra_margin_rad
    sun = sun_position_teme_km(eph.times)  # (T, 3)
    g = fn(eph.r_teme_km, sun[None, :, :])  # type: ignore[operator]

    def evaluate(sat: IntArray, t_s: FloatArray) -> FloatArray:
        r, _ = eph.state_at(sat, t_s)
        return fn(r, sun_position_teme_km(from_offsets(eph.start, t_s)))  # type: ignore[operator,no-any-return]

    w = find_windows(g, eph.t_s, evaluate, near_miss=_NEAR_MISS_RAD)
    return w.row, w.start_s, w.end_s


def _split_around(
    pen: tuple[IntArray, FloatArray, FloatArray], umb: tuple[IntArray, FloatArray, FloatArray]
) -> tuple[IntArray, FloatArray, FloatArray]:
    """Penumbra windows minus the umbra windows nested in them (sorted interval arithmetic)."""
    (p_sat, p_a, p_b), (u_sat, u_a, u_b) = pen, umb
    span = max(float(np.max(p_b, initial=0.0)) + 1.0, 1.0)
    owner = np.searchsorted(p_sat * span + p_a, u_sat * span + u_a, side="right") - 1
    piece_start = np.concatenate([np.arange(len(p_a)), owner]), np.concatenate([p_a, u_b])
    piece_end = np.concatenate([np.arange(len(p_b)), owner]), np.concatenate([p_b, u_a])
    s_order = np.lexsort((piece_start[1], piece_start[0]))
    e_order = np.lexsort((piece_end[1], piece_end[0]))
    owner_of = piece_start[0][s_order]
    start, end = piece_start[1][s_order], piece_end[1][e_order]
    keep = end > start
    return p_sat[owner_of][keep], start[keep], end[keep]


def find_eclipses(eph: Ephemeris, penumbra: bool = True) -> Eclipses:
    """Umbra intervals of every satellite, and the penumbral phases either side of them."""
    umb = _margin_windows(eph, umbra_margin_rad)
    parts = [(*umb, np.zeros(len(umb[0]), dtype=bool))]
    if penumbra:
        pen = _split_around(_margin_windows(eph, penumbra_margin_rad), umb)
        parts.append((*pen, np.ones(len(pen[0]), dtype=bool)))
    sat = np.concatenate([p[0] for p in parts]).astype(np.int64)
    start = np.concatenate([p[1] for p in parts])
    end = np.concatenate([p[2] for p in parts])
    is_pen = np.concatenate([p[3] for p in parts])
    order = np.lexsort((start, sat))
    kinds = ["penumbra" if x else "umbra" for x in is_pen[order].tolist()]
    sat, start = sat[order], start[order]
    r, v = eph.state_at(sat, start)
    beta = beta_angle_deg(r, v, sun_position_teme_km(from_offsets(eph.start, start)))
    return Eclipses(sat, start, end[order], kinds, beta)
