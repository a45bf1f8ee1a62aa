"""The contact plan: every ground-satellite and laser-link window of a time span.

One object that routing, scheduling and simulation consume; written as JSON, CSV,
Parquet, or an ION-DTN contact plan (``a contact`` / ``a range`` lines).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from starcompute.errors import InputError
from starcompute.links.config import default_uplink_rate_bps
from starcompute.orbits.constants import SPEED_OF_LIGHT_KM_S
from starcompute.times import FloatArray, format_utc, from_offsets, offsets_s, parse_utc

IntArray = npt.NDArray[np.int64]
FORMATS = ("json", "csv", "parquet", "ion")


class _WindowTable:
    """Columns of equal length, one row per window; ``_start``/``_end`` name the edges."""

    __slots__ = ()
    _start: ClassVar[str]
    _end: ClassVar[str]

    def __len__(self) -> int:
        return len(getattr(self, self._start))

    def _columns(self) -> list[str]:
        return [f.name for f in fields(self)]  # type: ignore[arg-type]

    def select(self, rows: npt.NDArray[Any]) -> Self:
        """The windows at ``rows`` (indices or a boolean mask), in that order."""
        return type(self)(**{name: getattr(self, name)[rows] for name in self._columns()})

    def clipped(self, duration_s: float) -> Self:
        """Windows starting before ``duration_s``, their ends cut there."""
        out = self.select(getattr(self, self._start) < duration_s)
        setattr(out, self._end, np.minimum(getattr(out, self._end), duration_s))
        return out

    @classmethod
    def concat(cls, parts: Sequence[Self]) -> Self:
        names = parts[0]._columns()
        return cls(**{n: np.concatenate([getattr(p, n) for p in parts]) for n in names})


@dataclass(slots=True)
class GroundContacts(_WindowTable):
    """Station-satellite passes; times in seconds from the plan start."""

    _start = "aos_s"
    _end = "los_s"

    station: IntArray
    satellite: IntArray
    aos_s: FloatArray
    los_s: FloatArray
    tca_s: FloatArray  # time of closest approach (maximum elevation)
    max_elevation_deg: FloatArray
    min_range_km: FloatArray  # slant range at maximum elevation
    rate_bps: FloatArray  # mean downlink rate over the pass (nominal without a link budget)
    up_rate_bps: FloatArray  # mean uplink rate over the pass (0: the uplink does not close)

    @classmethod
    def empty(cls) -> GroundContacts:
        z, f = np.zeros(0, dtype=np.int64), np.zeros(0)
        return cls(z, z.copy(), f, f.copy(), f.copy(), f.copy(), f.copy(), f.copy(), f.copy())

    def capacity_bytes(self, *, up: bool = False) -> FloatArray:
        """What each pass can carry down (or ``up``): rate x duration."""
        rate = self.up_rate_bps if up else self.rate_bps
        return np.asarray(np.nan_to_num(rate) * (self.los_s - self.aos_s) / 8.0)


@dataclass(slots=True)
class IslContacts(_WindowTable):
    """Laser-link windows (after acquisition); times in seconds from the plan start."""

    _start = "start_s"
    _end = "end_s"

    a: IntArray
    b: IntArray
    start_s: FloatArray
    end_s: FloatArray
    min_range_km: FloatArray
    max_range_km: FloatArray
    rate_bps: FloatArray  # mean laser rate over the window

    @classmethod
    def empty(cls) -> IslContacts:
        z, f = np.zeros(0, dtype=np.int64), np.zeros(0)
        return cls(z, z.copy(), f, f.copy(), f.copy(), f.copy(), f.copy())


@dataclass(slots=True)
class ContactPlan:
    start: np.datetime64
    end: np.datetime64
    satellites: list[str]
    stations: list[str]
    ground: GroundContacts
    isl: IslContacts
    ground_rate_bps: float
    isl_rate_bps: float
    uplink_rate_bps: float = field(default_factory=default_uplink_rate_bps)

    @property
    def duration_s(self) -> float:
        return float(offsets_s(self.end, self.start))

    def _times(self, seconds: FloatArray) -> list[str]:
        out = format_utc(from_offsets(self.start, seconds))
        return out if isinstance(out, list) else [out]

    def ground_records(self) -> list[dict[str, Any]]:
        g = self.ground
        aos, los, tca = self._times(g.aos_s), self._times(g.los_s), self._times(g.tca_s)
        return [
            {
                "station": self.stations[g.station[i]],
                "satellite": self.satellites[g.satellite[i]],
                "aos": aos[i],
                "los": los[i],
                "tca": tca[i],
                "duration_s": round(float(g.los_s[i] - g.aos_s[i]), 3),
                "max_elevation_deg": round(float(g.max_elevation_deg[i]), 3),
                "min_range_km": round(float(g.min_range_km[i]), 3),
                "rate_bps": round(float(g.rate_bps[i])),
                "up_rate_bps": round(float(g.up_rate_bps[i])),
            }
            for i in range(len(g))
        ]

    def isl_records(self) -> list[dict[str, Any]]:
        c = self.isl
        start, end = self._times(c.start_s), self._times(c.end_s)
        return [
            {
                "a": self.satellites[c.a[i]],
                "b": self.satellites[c.b[i]],
                "start": start[i],
                "end": end[i],
                "min_range_km": round(float(c.min_range_km[i]), 3),
                "max_range_km": round(float(c.max_range_km[i]), 3),
                "rate_bps": round(float(c.rate_bps[i])),
            }
            for i in range(len(c))
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": format_utc(self.start),
            "end": format_utc(self.end),
            "ground_rate_bps": self.ground_rate_bps,
            "uplink_rate_bps": self.uplink_rate_bps,
            "isl_rate_bps": self.isl_rate_bps,
            "satellites": self.satellites,
            "stations": self.stations,
            "ground_contacts": self.ground_records(),
            "isl_contacts": self.isl_records(),
        }

    def to_table(self) -> pa.Table:
        """One row per window: kind (ground|isl), from, to, start, end and geometry;
        ``rate_bps`` is from -> to for laser links and the downlink of a ground pass,
        ``up_rate_bps`` its uplink."""
        g, c = self.ground, self.isl
        names_sat = np.array(self.satellites, dtype=object)
        names_sta = np.array(self.stations, dtype=object)
        columns = {
            "kind": ["ground"] * len(g) + ["isl"] * len(c),
            "from": np.concatenate([names_sta[g.station], names_sat[c.a]]).tolist(),
            "to": np.concatenate([names_sat[g.satellite], names_sat[c.b]]).tolist(),
            "start": from_offsets(self.start, np.concatenate([g.aos_s, c.start_s])),
            "end": from_offsets(self.start, np.concatenate([g.los_s, c.end_s])),
            "max_elevation_deg": np.concatenate([g.max_elevation_deg, np.full(len(c), np.nan)]),
            "min_range_km": np.concatenate([g.min_range_km, c.min_range_km]),
            "rate_bps": np.concatenate([g.rate_bps, c.rate_bps]),
            "up_rate_bps": np.concatenate([g.up_rate_bps, c.rate_bps]),  # laser: both ways
        }
        table = pa.table(columns)
        return table.cast(
            table.schema.set(3, pa.field("start", pa.timestamp("ns", tz="UTC"))).set(
                4, pa.field("end", pa.timestamp("ns", tz="UTC"))
            )
        )

    def to_ion(self) -> str:
        """ION-DTN contact plan: contacts and ranges in both directions, node numbers 1..N."""
        node = {name: i + 1 for i, name in enumerate(self.satellites + self.stations)}
        lines = [
            f"# starcompute contact plan {format_utc(self.start)} .. {format_utc(self.end)}",
            "# times are seconds after the start; rates in bytes/s; ranges in light-seconds",
        ]
        lines += [f"# node {n} = {name}" for name, n in node.items()]
        g, c = self.ground, self.isl
        windows = [  # (a, b, start, end, rate a -> b, rate b -> a, range)
            (self.stations[s], self.satellites[t], a, b, up, down, r)
            for s, t, a, b, up, down, r in zip(
                g.station, g.satellite, g.aos_s, g.los_s, g.up_rate_bps, g.rate_bps,
                g.min_range_km, strict=True,
            )
        ] + [
            (self.satellites[x], self.satellites[y], a, b, rate, rate, r)
            for x, y, a, b, rate, r in zip(
                c.a, c.b, c.start_s, c.end_s, c.rate_bps, c.max_range_km, strict=True
            )
        ]  # fmt: skip
        windows.sort(key=lambda w: w[2])
        for a_name, b_name, t0, t1, ab_bps, ba_bps, range_km in windows:
            owlt_s = max(1, math.ceil(float(range_km) / SPEED_OF_LIGHT_KM_S))
            start, stop = math.floor(t0), math.ceil(t1)
            for x, y, rate_bps in (
                (node[a_name], node[b_name], ab_bps),
                (node[b_name], node[a_name], ba_bps),
            ):
                if rate_bps > 0:
                    lines.append(f"a contact +{start} +{stop} {x} {y} {int(rate_bps / 8)}")
                    lines.append(f"a range +{start} +{stop} {x} {y} {owlt_s}")
        return "\n".join(lines) + "\n"

    def write(self, path: str | Path, fmt: str) -> None:
        if fmt not in FORMATS:
            raise InputError(f"unknown contact-plan format {fmt!r}: choose one of {FORMATS}")
        path = Path(path)
        if fmt == "json":
            path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        elif fmt == "csv":
            pa_csv.write_csv(self.to_table(), path)
        elif fmt == "parquet":
            pq.write_table(self.to_table(), path)
        else:
            path.write_text(self.to_ion(), encoding="utf-8")

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ContactPlan:
        """Inverse of :meth:`to_dict` (times to the millisecond)."""
        try:
            start = parse_utc(doc["start"])
            sat_ix = {n: i for i, n in enumerate(doc["satellites"])}
            sta_ix = {n: i for i, n in enumerate(doc["stations"])}
            gc, ic = doc["ground_contacts"], doc["isl_contacts"]

            def sec(key: str, rows: list[dict[str, Any]]) -> FloatArray:
                return offsets_s(
                    np.array([parse_utc(r[key]) for r in rows], "datetime64[ns]"), start
                )

            def col(key: str, rows: list[dict[str, Any]], default: float = np.nan) -> FloatArray:
                return np.array([float(r.get(key, default)) for r in rows])

            ground_rate, isl_rate = float(doc["ground_rate_bps"]), float(doc["isl_rate_bps"])
            up_rate = float(doc.get("uplink_rate_bps", ground_rate))  # older plans: symmetric

            ground = GroundContacts(
                np.array([sta_ix[r["station"]] for r in gc], dtype=np.int64),
                np.array([sat_ix[r["satellite"]] for r in gc], dtype=np.int64),
                sec("aos", gc),
                sec("los", gc),
                sec("tca", gc),
                col("max_elevation_deg", gc),
                col("min_range_km", gc),
                col("rate_bps", gc, ground_rate),
                np.array([float(r.get("up_rate_bps", r.get("rate_bps", up_rate))) for r in gc]),
            )
            isl = IslContacts(
                np.array([sat_ix[r["a"]] for r in ic], dtype=np.int64),
                np.array([sat_ix[r["b"]] for r in ic], dtype=np.int64),
                sec("start", ic),
                sec("end", ic),
                col("min_range_km", ic),
                col("max_range_km", ic),
                col("rate_bps", ic, isl_rate),
            )
            return cls(
                start,
                parse_utc(doc["end"]),
                list(doc["satellites"]),
                list(doc["stations"]),
                ground,
                isl,
                ground_rate,
                isl_rate,
                up_rate,
            )
        except (KeyError, TypeError) as exc:
            raise InputError(f"not a starcompute contact plan: missing or bad {exc}") from None

    @classmethod
    def read_json(cls, path: str | Path) -> ContactPlan:
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read contact plan {path}: {exc}") from None
        return cls.from_dict(doc)
