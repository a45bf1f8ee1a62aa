"""Walker-delta and Walker-star shells, built into SGP4 records with ``sgp4init``.

Satellite (plane p, slot s) of a shell of P planes x S slots with phasing F and RAAN
spread W (360 deg for delta, 180 deg for star) gets

    RAAN = raan0 + p W / P,    argument of latitude u = 360 s / S + 360 p F / (P S),

on a circular orbit (e = 0, perigee argument 0, so mean anomaly = u). The mean motion
is chosen so that SGP4's Brouwer mean semi-major axis equals radius + altitude: a
shell's nominal altitude is its mean altitude above the equatorial radius.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sgp4.api import WGS72, Satrec

from starcompute.errors import InputError
from starcompute.orbits.constants import (
    J2_WGS72,
    MU_WGS72_KM3_S2,
    RADIUS_WGS72_KM,
    SECONDS_PER_DAY,
    TROPICAL_YEAR_DAYS,
)
from starcompute.orbits.omm import epoch_days_since_1949
from starcompute.orbits.sun import sun_right_ascension_deg

PATTERNS = ("delta", "star")
ROLES = ("inference", "training")


def sun_synchronous_inclination_deg(altitude_km: float) -> float:
    """Inclination whose J2 nodal drift follows the mean Sun (circular orbit).

    dRAAN/dt = -3/2 n J2 (Re/a)^2 cos i = 360 deg per tropical year (Vallado 4th ed. eq. 11-14).
    """
    a = RADIUS_WGS72_KM + altitude_km
    n = math.sqrt(MU_WGS72_KM3_S2 / a**3)
    rate = 2.0 * math.pi / (TROPICAL_YEAR_DAYS * SECONDS_PER_DAY)
    cos_i = -rate / (1.5 * n * J2_WGS72 * (RADIUS_WGS72_KM / a) ** 2)
    if cos_i < -1.0:
        raise InputError(f"no sun-synchronous orbit exists at {altitude_km} km")
    return math.degrees(math.acos(cos_i))


@dataclass(frozen=True, slots=True)
class WalkerShell:
    """One shell of a constellation; see the module docstring for the pattern."""

    name: str
    altitude_km: float
    inclination_deg: float
    planes: int
    sats_per_plane: int
    phasing: int = 1
    pattern: str = "delta"
    raan_spread_deg: float | None = None  # default: 360 for delta, 180 for star
    raan0_deg: float = 0.0
    role: str = "inference"
    hardware: str = "three-body-sat"
    satnum_start: int = 80001

    def __post_init__(self) -> None:
        where = f"shell {self.name!r}"
        if not 150.0 <= self.altitude_km <= 40_000.0:
            raise InputError(f"{where}: altitude_km must be in 150..40000, got {self.altitude_km}")
        if not 0.0 <= self.inclination_deg <= 180.0:
            raise InputError(
                f"{where}: inclination_deg must be in 0..180, got {self.inclination_deg}"
            )
        if self.planes < 1 or self.sats_per_plane < 1:
            raise InputError(f"{where}: planes and sats_per_plane must be >= 1")
        if not 0 <= self.phasing < max(self.planes, 1) or (self.planes == 1 and self.phasing):
            raise InputError(
                f"{where}: phasing F must be in 0..{self.planes - 1} (planes - 1), "
                f"got {self.phasing}"
            )
        if self.pattern not in PATTERNS:
            raise InputError(f"{where}: pattern must be one of {PATTERNS}, got {self.pattern!r}")
        if self.role not in ROLES:
            raise InputError(f"{where}: role must be one of {ROLES}, got {self.role!r}")
        spread = self.spread_deg
        if not 0.0 <= spread <= 360.0:
            raise InputError(f"{where}: raan_spread_deg must be in 0..360, got {spread}")
        if not (self.satnum_start >= 1 and self.satnum_start + self.size - 1 <= 339_999):
            raise InputError(f"{where}: satnum_start must leave room for {self.size} numbers")

    @property
    def size(self) -> int:
        return self.planes * self.sats_per_plane

    @property
    def spread_deg(self) -> float:
        if self.raan_spread_deg is not None:
            return self.raan_spread_deg
        return 360.0 if self.pattern == "delta" else 180.0

    @property
    def closed_ring(self) -> bool:
        """Whether the last plane neighbours the first (a full 360 deg of RAAN)."""
        return self.planes > 2 and math.isclose(self.spread_deg, 360.0)

    def satellite_name(self, plane: int, slot: int) -> str:
        return f"{self.name}-P{plane:02d}-S{slot:02d}"

    def plane_raan_deg(self) -> np.ndarray:
        return (self.raan0_deg + np.arange(self.planes) * self.spread_deg / self.planes) % 360.0

    def argument_of_latitude_deg(self) -> np.ndarray:
        """(planes, sats_per_plane) argument of latitude at epoch."""
        p = np.arange(self.planes)[:, None]
        s = np.arange(self.sats_per_plane)[None, :]
        u = 360.0 * s / self.sats_per_plane + 360.0 * p * self.phasing / self.size
        return np.asarray(u % 360.0, dtype=np.float64)

    def build(self, epoch: np.datetime64) -> list[tuple[str, int, int, Satrec]]:
        """(name, plane, slot, Satrec) for every satellite, plane-major order."""
        n_kozai = _kozai_mean_motion_rad_min(self.altitude_km, self.inclination_deg, epoch)
        raan = self.plane_raan_deg()
        u = self.argument_of_latitude_deg()
        out = []
        for p in range(self.planes):
            for s in range(self.sats_per_plane):
                satnum = self.satnum_start + p * self.sats_per_plane + s
                sat = _circular_satrec(
                    satnum, epoch, n_kozai, self.inclination_deg, raan[p], u[p, s]
                )
                out.append((self.satellite_name(p, s), p, s, sat))
        return out


def _circular_satrec(
    satnum: int,
    epoch: np.datetime64,
    n_kozai: float,
    incl_deg: float,
    raan_deg: float,
    u_deg: float,
) -> Satrec:
    sat = Satrec()
    sat.sgp4init(
        WGS72,
        "i",
        satnum,
        epoch_days_since_1949(epoch),
        0.0,  # bstar: no drag (planned shells are station-kept)
        0.0,
        0.0,
        0.0,  # circular
        0.0,
        math.radians(incl_deg),
        math.radians(u_deg),
        n_kozai,
        math.radians(raan_deg),
    )
    sat.classification = "U"
    sat.intldesg = ""
    return sat


def _kozai_mean_motion_rad_min(altitude_km: float, incl_deg: float, epoch: np.datetime64) -> float:
    """Kozai mean motion whose SGP4 (Brouwer) mean semi-major axis is Re + altitude."""
    target_er = (RADIUS_WGS72_KM + altitude_km) / RADIUS_WGS72_KM
    n = math.sqrt(MU_WGS72_KM3_S2 / (RADIUS_WGS72_KM + altitude_km) ** 3) * 60.0
    for _ in range(4):
        sat = _circular_satrec(1, epoch, n, incl_deg, 0.0, 0.0)
        n *= (sat.a / target_er) ** 1.5
    return n


def raan_for_ltan_deg(ltan_h: float, epoch: np.datetime64) -> float:
    """RAAN that puts the ascending node at local time ``ltan_h`` (hours) at ``epoch``."""
    if not 0.0 <= ltan_h < 24.0:
        raise InputError(f"ltan_h must be in 0..24 hours, got {ltan_h}")
    return (sun_right_ascension_deg(epoch) + 15.0 * (ltan_h - 12.0)) % 360.0
