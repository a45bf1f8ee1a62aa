"""Link models: RF downlink and uplink budgets with DVB-S2 ACM, the optical ISL rate, and
delays.

* A downlink (``direction = "down"``) radiates the satellite's EIRP into the station's
  G/T; an uplink (``"up"``) the station's EIRP (HPA power + dish gain, :func:`dish_gain_dbi`)
  into the satellite's G/T. Both directions close the same equation over the same slant
  path, each with its own preset (``data/links.toml``: ``x-band`` and ``ka-band`` down,
  ``s-band-up`` and ``ka-band-up`` up).

* Free-space loss per ITU-R P.525; gases, clouds, rain and scintillation per ITU-R P.618 /
  P.676 / P.840 / P.837 through ``itur`` (offline, from its package data).
* DVB-S2 adaptive coding and modulation: the MODCOD with the highest spectral efficiency
  whose ideal Es/N0 (ETSI EN 302 307-1 Table 13, ``data/dvbs2_modcods.csv``) plus an
  implementation margin fits the available Es/N0.
* Not modelled: the rise of the system noise temperature under rain (sky noise), Doppler,
  adjacent-channel interference; presets (``data/links.toml``) carry the assumptions.

Whole arrays in, whole arrays out; one ground station (scalar lat/lon) per call. A NaN range
or elevation (a satellite that could not be propagated) gives NaN losses and a rate of 0.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import tomllib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from starcompute.data import data_dir
from starcompute.errors import InputError, UnknownPresetError
from starcompute.orbits.constants import SPEED_OF_LIGHT_KM_S
from starcompute.times import FloatArray

ObjectArray = npt.NDArray[np.object_]

BOLTZMANN_DBW_K_HZ = -228.6  # 10 log10(1.380649e-23 J/K), rounded as in link-budget practice
FSPL_CONSTANT_DB = 92.45  # ITU-R P.525: 20 log10(4 pi 1e12 / c) for d in km and f in GHz
MIN_ELEVATION_DEG = 5.0  # ITU-R P.676 Annex 2 slant-path approximation: valid 5..90 deg

_FREQ_ALLOWED = "1..55 GHz (the range of the ITU-R P.618 rain model)"
_AVAIL_ALLOWED = "95..99.999 % (ITU-R P.618 covers 0.001..5 % of the time exceeded)"

# Elevations where itur is evaluated once per station; dense where attenuation changes fast.
_ELEVATION_GRID_DEG = np.concatenate(
    [np.arange(5.0, 15.0, 1.0), np.arange(15.0, 30.0, 2.5), np.arange(30.0, 90.5, 5.0)]
)
# Interpolation runs in cosec(elevation), in which path attenuation is nearly linear;
# reversed so that the abscissae increase.
_GRID_COSEC = (1.0 / np.sin(np.radians(_ELEVATION_GRID_DEG)))[::-1]


def _links_toml() -> dict[str, Any]:
    return tomllib.loads(data_dir(".").joinpath("links.toml").read_text(encoding="utf-8"))


def _floats(
    name: str, values: npt.ArrayLike, ok: Callable[[FloatArray], Any], allowed: str
) -> FloatArray:
    """``values`` as a float array; NaN passes through, any other value failing ``ok`` raises."""
    arr = np.asarray(values, dtype=np.float64)
    known = arr[~np.isnan(arr)]
    bad = known[~np.asarray(ok(known), dtype=bool)]
    if bad.size:
        raise InputError(f"{name} must be {allowed}, got {bad.flat[0]}")
    return arr


def _positive(name: str, values: npt.ArrayLike) -> FloatArray:
    return _floats(name, values, lambda a: np.isfinite(a) & (a > 0), "a positive finite number")


def _availability_ok(v: float) -> bool:
    return 95.0 <= v <= 99.999


def _scalar(name: str, value: float, ok: Callable[[float], bool], allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise InputError(f"{name} must be {allowed}, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and ok(v)):
        raise InputError(f"{name} must be {allowed}, got {value!r}")
    return v


# ---------------------------------------------------------------------------- free space


def free_space_path_loss_db(range_km: npt.ArrayLike, frequency_ghz: float) -> FloatArray:
    """Free-space basic transmission loss (ITU-R P.525): 92.45 + 20 log10 f_GHz + 20 log10 d_km."""
    d = _positive("range_km", range_km)
    f = _scalar("frequency_ghz", frequency_ghz, lambda v: v > 0, "a positive frequency in GHz")
    return np.asarray(FSPL_CONSTANT_DB + 20.0 * np.log10(f) + 20.0 * np.log10(d))


def dish_gain_dbi(diameter_m: float, frequency_ghz: float, efficiency: float = 0.6) -> float:
    """Boresight gain of a parabolic dish: 10 log10(efficiency x (pi D f / c)^2)."""
    d = _scalar("diameter_m", diameter_m, lambda v: v > 0, "a positive dish diameter in m")
    f = _scalar("frequency_ghz", frequency_ghz, lambda v: v > 0, "a positive frequency in GHz")
    eta = _scalar("efficiency", efficiency, lambda v: 0 < v <= 1, "an aperture efficiency in 0..1")
    wavelength_m = SPEED_OF_LIGHT_KM_S * 1e3 / (f * 1e9)
    return 10.0 * math.log10(eta * (math.pi * d / wavelength_m) ** 2)


# ------------------------------------------------------------------------ the atmosphere


@functools.lru_cache(maxsize=256)
def _attenuation_table(
    lat_deg: float, lon_deg: float, frequency_ghz: float, p_pct: float, diameter_m: float
) -> FloatArray:
    """Total slant-path attenuation (dB) on ``_ELEVATION_GRID_DEG`` from one itur call."""
    import itur  # imported here: loading it and its maps takes about a second

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        att = itur.atmospheric_attenuation_slant_path(
            lat_deg, lon_deg, frequency_ghz, _ELEVATION_GRID_DEG, p_pct, diameter_m
        )
    table = np.asarray(getattr(att, "value", att), dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(table)):
        raise InputError(f"itur gives no attenuation at lat {lat_deg}, lon {lon_deg} deg")
    table.setflags(write=False)
    return table


def atmospheric_attenuation_db(
    lat_deg: float,
    lon_deg: float,
    elevation_deg: npt.ArrayLike,
    frequency_ghz: float,
    availability_pct: float,
    antenna_diameter_m: float,
) -> FloatArray:
    """Gas + cloud + rain + scintillation loss (dB) not exceeded for ``availability_pct``.

    itur's ``atmospheric_attenuation_slant_path`` is evaluated once per station, frequency,
    availability and dish (cached, inputs rounded to 0.01 deg, 1 MHz, 1e-4 %, 1 cm) on a grid
    of elevations and interpolated in cosec(elevation) (within 0.1 % of a direct call).
    Elevations below 5 deg are taken as 5 deg (the validity limit of ITU-R P.676's
    approximation), so the loss there is underestimated.
    """
    lat = _scalar("lat_deg", lat_deg, lambda v: -90.0 <= v <= 90.0, "a latitude in -90..90 deg")
    lon = _scalar("lon_deg", lon_deg, lambda v: -180.0 <= v <= 360.0, "a longitude in -180..360")
    el = _floats("elevation_deg", elevation_deg, lambda a: np.abs(a) <= 90.0, "in -90..90 deg")
    f = _scalar("frequency_ghz", frequency_ghz, lambda v: 1.0 <= v <= 55.0, _FREQ_ALLOWED)
    a = _scalar("availability_pct", availability_pct, _availability_ok, _AVAIL_ALLOWED)
    d = _scalar("antenna_diameter_m", antenna_diameter_m, lambda v: v > 0, "a positive diameter")
    table = _attenuation_table(
        round(lat, 2), round(lon % 360.0, 2), round(f, 3), round(100.0 - a, 4), round(d, 2)
    )
    cosec = 1.0 / np.sin(np.radians(np.clip(el, MIN_ELEVATION_DEG, 90.0)))
    return np.asarray(np.interp(cosec, _GRID_COSEC, table[::-1]))


# ------------------------------------------------------------------------------ DVB-S2


@dataclass(frozen=True, slots=True)
class Modcod:
    """One DVB-S2 MODCOD (normal FECFRAME, no pilots) with its AWGN threshold."""

    name: str
    modulation: str
    code_rate: float
    spectral_efficiency_bit_per_symbol: float
    ideal_es_n0_db: float


@functools.cache
def dvbs2_modcods() -> tuple[Modcod, ...]:
    """The 28 DVB-S2 MODCODs of ``data/dvbs2_modcods.csv`` (EN 302 307-1 Table 13)."""
    text = data_dir(".").joinpath("dvbs2_modcods.csv").read_text(encoding="utf-8")
    rows = csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#"))
    return tuple(
        Modcod(
            name=row["modcod"],
            modulation=row["modulation"],
            code_rate=float(Fraction(row["code_rate"])),
            spectral_efficiency_bit_per_symbol=float(row["spectral_efficiency_bit_per_symbol"]),
            ideal_es_n0_db=float(row["ideal_es_n0_db"]),
        )
        for row in rows
    )


def select_modcod(
    es_n0_db: npt.ArrayLike, implementation_margin_db: float = 0.0
) -> tuple[ObjectArray, FloatArray]:
    """Best MODCOD per Es/N0: names ("" when none closes) and bit/symbol (0 when none).

    A MODCOD closes when its ideal Es/N0 + ``implementation_margin_db`` <= the available
    Es/N0 (with 1e-9 dB of rounding slack); among those the highest spectral efficiency wins.
    """
    es = np.asarray(es_n0_db, dtype=np.float64)
    table = dvbs2_modcods()
    eff = np.array([m.spectral_efficiency_bit_per_symbol for m in table])
    need = np.array([m.ideal_es_n0_db for m in table]) + implementation_margin_db
    closes = need <= es[..., None] + 1e-9
    best = np.argmax(np.where(closes, eff, -1.0), axis=-1)
    ok = closes.any(axis=-1)
    names = np.full(es.shape, "", dtype=object)
    names[ok] = np.array([m.name for m in table], dtype=object)[best[ok]]
    return names, np.where(ok, eff[best], 0.0)


# ------------------------------------------------------------------------- RF downlinks

_RF_RULES: dict[str, tuple[Callable[[float], bool], str]] = {
    "frequency_ghz": (lambda v: 1.0 <= v <= 55.0, _FREQ_ALLOWED),
    "bandwidth_hz": (lambda v: v > 0, "a positive bandwidth in Hz"),
    "rolloff": (lambda v: 0.05 <= v <= 0.35, "0.05..0.35 (the DVB-S2/S2X roll-offs)"),
    "eirp_dbw": (lambda v: True, "a finite number of dBW"),
    "gt_db_k": (lambda v: True, "a finite number of dB/K"),
    "availability_pct": (_availability_ok, _AVAIL_ALLOWED),
    "antenna_diameter_m": (lambda v: v > 0, "a positive dish diameter in m"),
    "implementation_margin_db": (lambda v: v >= 0, "a non-negative number of dB"),
    "other_losses_db": (lambda v: v >= 0, "a non-negative number of dB"),
}


DIRECTIONS = ("down", "up")


@dataclass(frozen=True, slots=True)
class RfLinkConfig:
    """An RF ground link with a DVB-S2 carrier: a downlink (satellite EIRP into the
    station's G/T) or an uplink (station EIRP into the satellite's G/T)."""

    band: str
    frequency_ghz: float
    bandwidth_hz: float
    rolloff: float
    eirp_dbw: float
    gt_db_k: float
    availability_pct: float
    antenna_diameter_m: float
    implementation_margin_db: float
    other_losses_db: float
    direction: str = "down"

    def __post_init__(self) -> None:
        if not isinstance(self.band, str) or not self.band:
            raise InputError(f"RF link band must be a non-empty name, got {self.band!r}")
        if self.direction not in DIRECTIONS:
            raise InputError(f"RF link direction must be down or up, got {self.direction!r}")
        for name, (ok, allowed) in _RF_RULES.items():
            _scalar(f"RF link {name}", getattr(self, name), ok, allowed)

    @property
    def symbol_rate_baud(self) -> float:
        """DVB-S2 symbol rate filling the bandwidth: Rs = B / (1 + rolloff)."""
        return self.bandwidth_hz / (1.0 + self.rolloff)

    @staticmethod
    def presets(direction: str | None = None) -> list[str]:
        """Names of the ``[rf.*]`` tables of ``data/links.toml`` (of one direction)."""
        tables: dict[str, dict[str, Any]] = _links_toml().get("rf", {})
        return sorted(
            n for n, t in tables.items() if direction in (None, t.get("direction", "down"))
        )

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> RfLinkConfig:
        """A ``[rf.<name>]`` table of ``data/links.toml`` (``x-band``, ``ka-band``,
        ``s-band-up``, ``ka-band-up``)."""
        presets: dict[str, dict[str, Any]] = _links_toml().get("rf", {})
        if name not in presets:
            raise UnknownPresetError("RF link preset", name, sorted(presets), files_allowed=False)
        values: dict[str, Any] = {"band": name}
        values.update({k: v if k == "direction" else float(v) for k, v in presets[name].items()})
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True, slots=True)
class RfBudget:
    """Downlink budget per sample; ``modcod`` is "" and ``rate_bps`` 0 where none closes."""

    fspl_db: FloatArray
    atmospheric_db: FloatArray
    cn0_dbhz: FloatArray
    es_n0_db: FloatArray
    modcod: ObjectArray
    spectral_efficiency_bit_per_symbol: FloatArray
    rate_bps: FloatArray


def rf_link_budget(
    range_km: npt.ArrayLike,
    elevation_deg: npt.ArrayLike,
    lat_deg: float,
    lon_deg: float,
    config: RfLinkConfig,
    atmospheric_db: npt.ArrayLike | None = None,
) -> RfBudget:
    """DVB-S2 ACM link between satellites at ``range_km``/``elevation_deg`` and one station
    (either direction: ``config`` holds the transmitter's EIRP and the receiver's G/T).

    C/N0 = EIRP - FSPL - L_atm - other losses + G/T - k;  Es/N0 = C/N0 - 10 log10(Rs);
    rate = Rs x spectral efficiency of the selected MODCOD. ``atmospheric_db`` replaces the
    ITU-R model by given losses (clear sky: 0).
    """
    rng, el = np.broadcast_arrays(
        np.asarray(range_km, dtype=np.float64), np.asarray(elevation_deg, dtype=np.float64)
    )
    fspl = free_space_path_loss_db(rng, config.frequency_ghz)
    if atmospheric_db is None:
        atm = atmospheric_attenuation_db(
            lat_deg,
            lon_deg,
            el,
            config.frequency_ghz,
            config.availability_pct,
            config.antenna_diameter_m,
        )
    else:
        atm = np.broadcast_to(np.asarray(atmospheric_db, dtype=np.float64), rng.shape).copy()
    cn0 = (
        config.eirp_dbw - fspl - atm - config.other_losses_db + config.gt_db_k
    ) - BOLTZMANN_DBW_K_HZ
    es_n0 = cn0 - 10.0 * math.log10(config.symbol_rate_baud)
    names, eff = select_modcod(es_n0, config.implementation_margin_db)
    return RfBudget(fspl, atm, cn0, es_n0, names, eff, eff * config.symbol_rate_baud)


# -------------------------------------------------------------------------- optical ISL


def optical_isl_rate_bps(
    range_km: npt.ArrayLike, rate_bps: float, max_range_km: float, knee_km: float
) -> FloatArray:
    """Laser ISL rate: ``rate_bps`` up to ``knee_km``, then x (knee / range)^2, 0 past the max.

    Received power falls as 1/range^2 and, at a constant number of photons per bit, the rate
    follows the power. ``knee_km`` may be ``inf`` (no fall-off). NaN ranges give 0.
    """
    r = _floats("range_km", range_km, lambda a: a >= 0, "a non-negative range in km")
    rate = _scalar("rate_bps", rate_bps, lambda v: v > 0, "a positive rate in bit/s")
    max_r = _scalar("max_range_km", max_range_km, lambda v: v > 0, "a positive range in km")
    if math.isnan(knee_km) or knee_km <= 0:
        raise InputError(f"knee_km must be a positive range in km (inf: none), got {knee_km}")
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(r <= knee_km, 1.0, (knee_km / r) ** 2)
    return np.asarray(np.where(r <= max_r, rate * scale, 0.0))


# ------------------------------------------------------------------------------- delays


def propagation_delay_s(range_km: npt.ArrayLike) -> FloatArray:
    """Light time over ``range_km`` in vacuum: range / c."""
    r = _floats("range_km", range_km, lambda a: np.isfinite(a) & (a >= 0), "a range >= 0 km")
    return np.asarray(r / SPEED_OF_LIGHT_KM_S)


def serialization_delay_s(size_bytes: npt.ArrayLike, rate_bps: npt.ArrayLike) -> FloatArray:
    """Time to clock ``size_bytes`` onto a link of ``rate_bps``: 8 x bytes / rate."""
    size = _floats("size_bytes", size_bytes, lambda a: np.isfinite(a) & (a >= 0), "bytes >= 0")
    rate = _positive("rate_bps", rate_bps)
    return np.asarray(8.0 * size / rate)


def default_processing_delay_s() -> float:
    """Per-hop processing delay of ``[routing]`` in ``data/links.toml`` (0.1 ms, assumed)."""
    return float(_links_toml()["routing"]["processing_delay_s"])
