"""The LEO radiation environment: a simple, documented engineering model (not AE9/AP9).

What is modelled
----------------
A dimensionless *relative flux* at a position (geographic ``lat_deg``, ``lon_deg`` on a
spherical Earth, ``alt_km``), 1.0 being the galactic-cosmic-ray (GCR) background away
from the belts::

    relative_flux = 1 + saa + horns
    saa   = (saa_peak_factor - 1) * exp((alt_km - saa_reference_alt_km) / saa_scale_height_km)
              * exp(-dlat^2 / (2 saa_sigma_lat_deg^2) - dlon^2 / (2 saa_sigma_lon_deg^2))
    horns = (horn_peak_factor - 1)
              * exp(-(|mlat| - horn_center_mlat_deg)^2 / (2 horn_sigma_mlat_deg^2))

* **South Atlantic Anomaly** (inner-belt protons dipping low where the field is weak): a
  2-D Gaussian in geographic latitude/longitude around a fixed centre (27 S, 45 W at
  ~500 km, mid-2020s), the longitude distance taken modulo 360 (the shortest way round).
  At ``saa_reference_alt_km`` the flux at the centre is ``saa_peak_factor`` (~50) times
  the background; the amplitude grows with altitude as exp(Δalt / 150 km) (assumed).
* **Polar horns / outer belt** (trapped electrons where field lines of the outer belt
  reach LEO): Gaussian bands in |geomagnetic latitude| around 65 deg (width 6 deg), peak
  ``horn_peak_factor`` (~5) times the background, the same at every altitude. Geomagnetic
  latitude comes from a centred tilted dipole whose north pole is at 80.65 N, 72.68 W
  (IGRF-13 at 2020.0, Alken et al. 2021, Earth Planets Space 73, 49, Table 4)::

      sin(mlat) = sin(lat) sin(lat_p) + cos(lat) cos(lat_p) cos(lon - lon_p)

Calibration
-----------
The model's shape is only relative; absolute rates come from two in-orbit references,
each an *orbit average* on its own orbit:

* SEU rate: 4e-7 upsets/bit/day, the Alsat-1 SRAM measurement (98.6 % single-bit
  upsets), ~686 km sun-synchronous, inclination ~98.2 deg;
* ionising dose: 150 rad(Si)/yr shielded, Google Project Suncatcher's expectation of
  ~750 rad(Si) over 5 years at 650 km dawn-dusk SSO (arXiv 2511.19468).

At a position, rate = reference × relative_flux(position) / ⟨relative_flux⟩(reference
orbit). The orbit average ⟨·⟩ is computed numerically, without SGP4: a circular orbit is
sampled uniformly in argument of latitude (uniform in time for a circular orbit) and in
longitude of the ascending node (Earth turns under the orbit, so over days the ground
track covers all longitudes evenly), 360 × 90 samples on a spherical Earth. Both
Gaussians are smooth and periodic on that grid, so the sum converges geometrically; it
is cached per configuration (``functools.lru_cache``).

What is *not* modelled
----------------------
* No solar particle events (a large event can deliver a year's dose in a day), no
  geomagnetic storms, no solar-cycle variation (the SAA is stronger at solar minimum,
  anti-correlated with F10.7, Fürst et al. 2009), no east-west or day-night asymmetry.
* No shielding-depth or particle-energy dependence: the dose shape in altitude and
  position is the same relative flux as the SEU shape, and the shielding behind the
  Suncatcher figure is folded into the calibration; SEU rates of other memories scale
  only through the baseline. Per-bit rates ignore multi-bit upsets (~1.4 % for Alsat-1).
* The SAA centre is a fixed epoch position (``saa_epoch_year``). It drifts west by
  ~0.3 deg/yr (RXTE 1996-2007, Fürst et al. 2009; 0.343 deg/yr from Insight-HXMT,
  2017-2024) and slightly north; ``RadiationConfig.with_saa_epoch`` moves it west by the
  drift rate for another year, which is all the drift there is here. The centre does not
  move with altitude.
* Horn intensity does not change with altitude; the dipole is centred (not eccentric)
  and fixed at 2020.0. Geodetic latitude is used as geocentric (< 0.2 deg difference).
* Valid for circular LEO, roughly 300-1,200 km: the exponential SAA growth is not
  capped and becomes meaningless deep inside the inner belt.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import tomllib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from starcompute.data import data_dir
from starcompute.errors import InputError

FloatArray = npt.NDArray[np.float64]

BITS_PER_GB = 8e9
DAYS_PER_YEAR = 365.25  # Julian year: the dose references are per year of 365.25 days

# Samples of the numerical orbit average: argument of latitude x longitude of the node.
ORBIT_SAMPLES_U = 360
ORBIT_SAMPLES_NODE = 90

# (toml section, key) of every field of RadiationConfig
_TOML_KEYS: dict[str, tuple[str, str]] = {
    "saa_center_lat_deg": ("saa", "center_lat_deg"),
    "saa_center_lon_deg": ("saa", "center_lon_deg"),
    "saa_epoch_year": ("saa", "epoch_year"),
    "saa_drift_west_deg_per_year": ("saa", "drift_west_deg_per_year"),
    "saa_sigma_lat_deg": ("saa", "sigma_lat_deg"),
    "saa_sigma_lon_deg": ("saa", "sigma_lon_deg"),
    "saa_peak_factor": ("saa", "peak_factor"),
    "saa_reference_alt_km": ("saa", "reference_alt_km"),
    "saa_scale_height_km": ("saa", "scale_height_km"),
    "horn_center_mlat_deg": ("horns", "center_mlat_deg"),
    "horn_sigma_mlat_deg": ("horns", "sigma_mlat_deg"),
    "horn_peak_factor": ("horns", "peak_factor"),
    "dipole_pole_lat_deg": ("dipole", "pole_lat_deg"),
    "dipole_pole_lon_deg": ("dipole", "pole_lon_deg"),
    "seu_baseline_per_bit_per_day": ("seu", "baseline_per_bit_per_day"),
    "seu_reference_alt_km": ("seu", "reference_alt_km"),
    "seu_reference_incl_deg": ("seu", "reference_incl_deg"),
    "dose_reference_rad_si_per_year": ("dose", "reference_rad_si_per_year"),
    "dose_reference_alt_km": ("dose", "reference_alt_km"),
    "dose_reference_incl_deg": ("dose", "reference_incl_deg"),
}


@dataclass(frozen=True, slots=True)
class RadiationConfig:
    """Every parameter of the radiation model; ``default()`` reads ``data/radiation.toml``.

    Peak factors are relative fluxes at the peak, background included (1 = no term).
    """

    saa_center_lat_deg: float
    saa_center_lon_deg: float
    saa_epoch_year: float
    saa_drift_west_deg_per_year: float
    saa_sigma_lat_deg: float
    saa_sigma_lon_deg: float
    saa_peak_factor: float
    saa_reference_alt_km: float
    saa_scale_height_km: float
    horn_center_mlat_deg: float
    horn_sigma_mlat_deg: float
    horn_peak_factor: float
    dipole_pole_lat_deg: float
    dipole_pole_lon_deg: float
    seu_baseline_per_bit_per_day: float
    seu_reference_alt_km: float
    seu_reference_incl_deg: float
    dose_reference_rad_si_per_year: float
    dose_reference_alt_km: float
    dose_reference_incl_deg: float

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InputError(f"radiation {f.name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise InputError(f"radiation {f.name} must be a finite number, got {value}")
        rules: list[tuple[str, bool, str]] = [
            ("saa_center_lat_deg", -90.0 <= self.saa_center_lat_deg <= 90.0, "in [-90, 90]"),
            ("saa_sigma_lat_deg", self.saa_sigma_lat_deg > 0, "> 0"),
            ("saa_sigma_lon_deg", self.saa_sigma_lon_deg > 0, "> 0"),
            ("saa_peak_factor", self.saa_peak_factor >= 1, ">= 1 (1: no SAA)"),
            ("saa_reference_alt_km", self.saa_reference_alt_km > 0, "> 0"),
            ("saa_scale_height_km", self.saa_scale_height_km > 0, "> 0"),
            ("horn_center_mlat_deg", 0.0 <= self.horn_center_mlat_deg <= 90.0, "in [0, 90]"),
            ("horn_sigma_mlat_deg", self.horn_sigma_mlat_deg > 0, "> 0"),
            ("horn_peak_factor", self.horn_peak_factor >= 1, ">= 1 (1: no horns)"),
            ("dipole_pole_lat_deg", -90.0 <= self.dipole_pole_lat_deg <= 90.0, "in [-90, 90]"),
            ("seu_baseline_per_bit_per_day", self.seu_baseline_per_bit_per_day > 0, "> 0"),
            ("seu_reference_alt_km", self.seu_reference_alt_km > 0, "> 0"),
            ("seu_reference_incl_deg", 0.0 <= self.seu_reference_incl_deg <= 180.0, "in [0, 180]"),
            ("dose_reference_rad_si_per_year", self.dose_reference_rad_si_per_year > 0, "> 0"),
            ("dose_reference_alt_km", self.dose_reference_alt_km > 0, "> 0"),
            (
                "dose_reference_incl_deg",
                0.0 <= self.dose_reference_incl_deg <= 180.0,
                "in [0, 180]",
            ),
        ]
        for name, ok, allowed in rules:
            if not ok:
                raise InputError(f"radiation {name} must be {allowed}, got {getattr(self, name)}")

    @classmethod
    def default(cls, **overrides: float) -> RadiationConfig:
        """The preset of ``data/radiation.toml``, with any field overridden by keyword."""
        unknown = sorted(set(overrides) - set(_TOML_KEYS))
        if unknown:
            raise InputError(
                f"unknown radiation parameter(s) {', '.join(unknown)}: "
                f"choose from {', '.join(_TOML_KEYS)}"
            )
        base = _default_config()
        return dataclasses.replace(base, **overrides) if overrides else base

    def with_saa_epoch(self, year: float) -> RadiationConfig:
        """The same model with the SAA centre moved west by the drift rate to ``year``."""
        if not math.isfinite(year):
            raise InputError(f"SAA epoch year must be a finite number, got {year}")
        shift = self.saa_drift_west_deg_per_year * (year - self.saa_epoch_year)
        lon = (self.saa_center_lon_deg - shift + 180.0) % 360.0 - 180.0
        return dataclasses.replace(self, saa_center_lon_deg=lon, saa_epoch_year=float(year))


@functools.lru_cache(maxsize=1)
def _default_config() -> RadiationConfig:
    text = data_dir(".").joinpath("radiation.toml").read_text(encoding="utf-8")
    table: dict[str, Any] = tomllib.loads(text)
    values: dict[str, Any] = {}
    for name, (section, key) in _TOML_KEYS.items():
        try:
            values[name] = float(table[section][key])
        except KeyError as exc:
            raise InputError(f"radiation.toml lacks [{section}] {key}") from exc
    return RadiationConfig(**values)


def _config(config: RadiationConfig | None) -> RadiationConfig:
    return _default_config() if config is None else config


def _lat_lon_alt(
    lat_deg: npt.ArrayLike, lon_deg: npt.ArrayLike, alt_km: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    lat = np.asarray(lat_deg, dtype=np.float64)
    lon = np.asarray(lon_deg, dtype=np.float64)
    alt = np.asarray(alt_km, dtype=np.float64)
    if np.any(np.abs(lat) > 90.0):
        raise InputError("lat_deg must lie in [-90, 90] (NaN allowed)")
    return lat, lon, alt


def _wrap_deg(angle_deg: FloatArray) -> FloatArray:
    """Angle difference taken the shortest way round, in [-180, 180)."""
    return np.mod(angle_deg + 180.0, 360.0) - 180.0


def geomagnetic_lat_deg(
    lat_deg: npt.ArrayLike, lon_deg: npt.ArrayLike, config: RadiationConfig | None = None
) -> FloatArray:
    """Centred-tilted-dipole geomagnetic latitude of geographic positions (broadcast)."""
    cfg = _config(config)
    lat = np.deg2rad(np.asarray(lat_deg, dtype=np.float64))
    lon = np.deg2rad(np.asarray(lon_deg, dtype=np.float64))
    lat_p = math.radians(cfg.dipole_pole_lat_deg)
    lon_p = math.radians(cfg.dipole_pole_lon_deg)
    sin_m = np.sin(lat) * math.sin(lat_p) + np.cos(lat) * math.cos(lat_p) * np.cos(lon - lon_p)
    return np.asarray(np.rad2deg(np.arcsin(np.clip(sin_m, -1.0, 1.0))), dtype=np.float64)


def _relative_flux(
    lat: FloatArray, lon: FloatArray, alt: FloatArray, cfg: RadiationConfig
) -> FloatArray:
    dlat = (lat - cfg.saa_center_lat_deg) / cfg.saa_sigma_lat_deg
    dlon = _wrap_deg(lon - cfg.saa_center_lon_deg) / cfg.saa_sigma_lon_deg
    saa_amp = (cfg.saa_peak_factor - 1.0) * np.exp(
        (alt - cfg.saa_reference_alt_km) / cfg.saa_scale_height_km
    )
    saa = saa_amp * np.exp(-0.5 * (dlat * dlat + dlon * dlon))
    mlat = geomagnetic_lat_deg(lat, lon, cfg)
    dm = (np.abs(mlat) - cfg.horn_center_mlat_deg) / cfg.horn_sigma_mlat_deg
    horns = (cfg.horn_peak_factor - 1.0) * np.exp(-0.5 * dm * dm)
    return np.asarray(1.0 + saa + horns, dtype=np.float64)


def relative_flux(
    lat_deg: npt.ArrayLike,
    lon_deg: npt.ArrayLike,
    alt_km: npt.ArrayLike,
    config: RadiationConfig | None = None,
) -> FloatArray:
    """Particle flux relative to the GCR background (1.0) at positions (broadcast; NaN -> NaN)."""
    lat, lon, alt = _lat_lon_alt(lat_deg, lon_deg, alt_km)
    return _relative_flux(lat, lon, alt, _config(config))


def _orbit_average(alt: FloatArray, incl: FloatArray, cfg: RadiationConfig) -> FloatArray:
    u = (np.arange(ORBIT_SAMPLES_U) + 0.5) * (2.0 * np.pi / ORBIT_SAMPLES_U)
    node_deg = np.arange(ORBIT_SAMPLES_NODE) * (360.0 / ORBIT_SAMPLES_NODE)
    i = np.deg2rad(incl)[..., None]  # (..., U)
    lat = np.rad2deg(np.arcsin(np.clip(np.sin(i) * np.sin(u), -1.0, 1.0)))
    lon_rel = np.rad2deg(np.arctan2(np.cos(i) * np.sin(u), np.cos(u)))
    lon = lon_rel[..., :, None] + node_deg  # (..., U, N)
    flux = _relative_flux(lat[..., :, None], lon, alt[..., None, None], cfg)
    return np.asarray(flux.mean(axis=(-2, -1)), dtype=np.float64)


def orbit_average_flux(
    alt_km: npt.ArrayLike, incl_deg: npt.ArrayLike, config: RadiationConfig | None = None
) -> FloatArray:
    """Time average of ``relative_flux`` over circular orbits (broadcast over alt and incl).

    Uniform in argument of latitude and in longitude of the node (360 x 90 samples).
    """
    alt = np.asarray(alt_km, dtype=np.float64)
    incl = np.asarray(incl_deg, dtype=np.float64)
    if np.any((incl < 0.0) | (incl > 180.0)):
        raise InputError("incl_deg must lie in [0, 180] (NaN allowed)")
    alt, incl = np.broadcast_arrays(alt, incl)
    return _orbit_average(alt, incl, _config(config))


@functools.lru_cache(maxsize=32)
def _reference_averages(cfg: RadiationConfig) -> tuple[float, float]:
    """(⟨flux⟩ on the SEU reference orbit, ⟨flux⟩ on the dose reference orbit)."""
    alts = np.array([cfg.seu_reference_alt_km, cfg.dose_reference_alt_km])
    incls = np.array([cfg.seu_reference_incl_deg, cfg.dose_reference_incl_deg])
    seu, dose = _orbit_average(alts, incls, cfg)
    return float(seu), float(dose)


def _scales(cfg: RadiationConfig) -> tuple[float, float]:
    """Relative flux -> (SEU per bit per day, dose rad(Si) per day), by calibration."""
    seu_avg, dose_avg = _reference_averages(cfg)
    return (
        cfg.seu_baseline_per_bit_per_day / seu_avg,
        cfg.dose_reference_rad_si_per_year / DAYS_PER_YEAR / dose_avg,
    )


def rates(
    lat_deg: npt.ArrayLike,
    lon_deg: npt.ArrayLike,
    alt_km: npt.ArrayLike,
    config: RadiationConfig | None = None,
) -> tuple[FloatArray, FloatArray]:
    """(SEU /bit/day, dose rad(Si)/day) at positions, from one evaluation of the flux."""
    cfg = _config(config)
    flux = _relative_flux(*_lat_lon_alt(lat_deg, lon_deg, alt_km), cfg)
    seu_scale, dose_scale = _scales(cfg)
    return (
        np.asarray(seu_scale * flux, dtype=np.float64),
        np.asarray(dose_scale * flux, dtype=np.float64),
    )


def seu_rate_per_bit_per_day(
    lat_deg: npt.ArrayLike,
    lon_deg: npt.ArrayLike,
    alt_km: npt.ArrayLike,
    config: RadiationConfig | None = None,
) -> FloatArray:
    """Single-event-upset rate per bit per day at positions, calibrated on Alsat-1's orbit."""
    return rates(lat_deg, lon_deg, alt_km, config)[0]


def dose_rate_rad_si_per_day(
    lat_deg: npt.ArrayLike,
    lon_deg: npt.ArrayLike,
    alt_km: npt.ArrayLike,
    config: RadiationConfig | None = None,
) -> FloatArray:
    """Shielded ionising dose rate, rad(Si)/day, at positions; calibrated on Suncatcher's orbit."""
    return rates(lat_deg, lon_deg, alt_km, config)[1]


def _samples_last_axis(samples: npt.ArrayLike) -> FloatArray:
    arr = np.asarray(samples, dtype=np.float64)
    if arr.ndim == 0:
        arr = arr[None]
    if arr.shape[-1] == 0:
        raise InputError("rate samples must not be empty: give at least one sample in time")
    return arr


def expected_seu_per_gb(rate_per_bit_per_day_samples: npt.ArrayLike, dt_s: float) -> FloatArray:
    """Expected upsets in 1 GB (8e9 bits) over the samples, spaced ``dt_s`` apart.

    Rectangle rule over the last axis (time): sum x dt / 86,400 x 8e9; leading axes
    (satellites, ...) are kept. A NaN sample makes its series NaN.
    """
    if not (math.isfinite(dt_s) and dt_s > 0):
        raise InputError(f"dt_s must be a positive finite number of seconds, got {dt_s}")
    rates = _samples_last_axis(rate_per_bit_per_day_samples)
    return np.asarray(rates.sum(axis=-1) * (dt_s / 86_400.0) * BITS_PER_GB, dtype=np.float64)


def annual_dose_rad_si(dose_rate_samples_per_day: npt.ArrayLike) -> FloatArray:
    """Dose per year, rad(Si): mean dose rate over the last axis (time) x 365.25 days."""
    rates = _samples_last_axis(dose_rate_samples_per_day)
    return np.asarray(rates.mean(axis=-1) * DAYS_PER_YEAR, dtype=np.float64)
