"""Ground stations: presets as CSV data and custom stations from CSV.

CSV columns: ``name,lat_deg,lon_deg,alt_m,min_elevation_deg`` (extra columns such as
``source`` are kept as notes; lines starting with ``#`` are comments). Several presets
and files combine with commas: ``--stations china,ksat,aws``.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

import numpy as np

from starcompute.data import preset_names, read_preset_or_file
from starcompute.errors import InputError
from starcompute.orbits.frames import geodetic_to_ecef, up_vector
from starcompute.times import FloatArray

COLUMNS = (
    "name",
    "lat_deg",
    "lon_deg",
    "alt_m",
    "min_elevation_deg",
    "antennas",
    "antennas_source",
)
DEFAULT_MIN_ELEVATION_DEG = 10.0
DEFAULT_ANTENNAS = 1  # a station without a count: one antenna, "assumed"


@dataclass(frozen=True, slots=True)
class GroundStation:
    name: str
    lat_deg: float
    lon_deg: float
    alt_m: float = 0.0
    min_elevation_deg: float = DEFAULT_MIN_ELEVATION_DEG
    antennas: int = DEFAULT_ANTENNAS  # each tracks one satellite at a time
    antennas_source: str = "assumed"  # where the count comes from

    def __post_init__(self) -> None:
        where = f"station {self.name!r}"
        if not self.name:
            raise InputError("a station needs a non-empty name")
        values = (self.lat_deg, self.lon_deg, self.alt_m, self.min_elevation_deg)
        if not all(math.isfinite(v) for v in values):
            raise InputError(f"{where}: coordinates must be finite numbers")
        if not -90.0 <= self.lat_deg <= 90.0:
            raise InputError(f"{where}: latitude {self.lat_deg} is out of range -90..90 deg")
        if not -180.0 <= self.lon_deg <= 360.0:
            raise InputError(f"{where}: longitude {self.lon_deg} is out of range -180..360 deg")
        if not -500.0 <= self.alt_m <= 9000.0:
            raise InputError(f"{where}: altitude {self.alt_m} m is out of range -500..9000 m")
        if not -5.0 <= self.min_elevation_deg < 90.0:
            raise InputError(
                f"{where}: min_elevation_deg {self.min_elevation_deg} is out of range -5..90"
            )
        if not 0 <= self.antennas <= 10_000:
            raise InputError(f"{where}: antennas {self.antennas} is out of range 0..10000")


def stations_ecef_km(stations: list[GroundStation]) -> FloatArray:
    return geodetic_to_ecef(
        np.array([s.lat_deg for s in stations]),
        np.array([s.lon_deg for s in stations]),
        np.array([s.alt_m for s in stations]),
    )


def stations_up(stations: list[GroundStation]) -> FloatArray:
    return up_vector(
        np.array([s.lat_deg for s in stations]), np.array([s.lon_deg for s in stations])
    )


def _number(row: dict[str, str], column: str, where: str, default: float | None = None) -> float:
    text = row.get(column, "")
    if text == "" and default is not None:
        return default
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{where}: {column} is not a number: {text!r}") from None


def parse_stations_csv(text: str, source: str) -> list[GroundStation]:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in COLUMNS[:3] if c not in header]
    if missing:
        raise InputError(
            f"{source}: station CSV header lacks {', '.join(missing)}; expected {','.join(COLUMNS)}"
        )
    out = []
    for number, raw in enumerate(reader, start=1):
        row = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
        where = f"{source} data row {number}"
        values = (
            _number(row, "lat_deg", where),
            _number(row, "lon_deg", where),
            _number(row, "alt_m", where, 0.0),
            _number(row, "min_elevation_deg", where, DEFAULT_MIN_ELEVATION_DEG),
        )
        antennas = _number(row, "antennas", where, DEFAULT_ANTENNAS)
        if antennas != int(antennas):
            raise InputError(f"{where}: antennas must be a whole number, got {antennas}")
        counted_by = row.get("antennas_source", "") or "assumed"
        try:
            out.append(GroundStation(row.get("name", ""), *values, int(antennas), counted_by))
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
    if not out:
        raise InputError(f"{source}: no stations (expected a header {','.join(COLUMNS)} and rows)")
    return out


def station_presets() -> list[str]:
    return preset_names("stations", ".csv")


def _load_one(spec: str) -> list[GroundStation]:
    return parse_stations_csv(read_preset_or_file("stations", ".csv", spec, "station preset"), spec)


def load_stations(spec: str, min_elevation_deg: float | None = None) -> list[GroundStation]:
    """Presets and/or CSV files joined by commas; ``min_elevation_deg`` overrides every mask."""
    stations = [s for part in spec.split(",") if part.strip() for s in _load_one(part.strip())]
    if not stations:
        raise InputError(f"no stations in {spec!r}")
    names = [s.name for s in stations]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"duplicate station names {dup[:5]} in {spec!r}")
    if min_elevation_deg is not None:
        stations = [
            GroundStation(s.name, s.lat_deg, s.lon_deg, s.alt_m, min_elevation_deg)
            for s in stations
        ]
    return stations
