"""Line-of-sight geometry: elevation from a station, and ISL clearance above the Earth."""

from __future__ import annotations

import numpy as np

from starcompute.orbits.constants import RADIUS_EARTH_KM
from starcompute.times import FloatArray


def sin_elevation(r_ecef_km: FloatArray, station_km: FloatArray, up: FloatArray) -> FloatArray:
    """sin(elevation) of satellites (..., 3) seen from one station (ECEF km, unit up)."""
    d = r_ecef_km - station_km
    return np.asarray(np.einsum("...k,k->...", d, up) / np.linalg.norm(d, axis=-1))


def slant_range_km(r_ecef_km: FloatArray, station_km: FloatArray) -> FloatArray:
    return np.asarray(np.linalg.norm(r_ecef_km - station_km, axis=-1))


def ray_clearance_km(a_km: FloatArray, b_km: FloatArray) -> FloatArray:
    """Smallest distance from the Earth's centre to the segment a-b, minus the Earth radius."""
    ab = b_km - a_km
    lam = np.clip(-np.sum(a_km * ab, axis=-1) / np.maximum(np.sum(ab * ab, axis=-1), 1e-12), 0, 1)
    closest = a_km + lam[..., None] * ab
    return np.asarray(np.linalg.norm(closest, axis=-1) - RADIUS_EARTH_KM)
