"""Telemetry on the ground: every satellite's housekeeping as it was received, with limits
and alarms (what an operations console such as Yamcs or Open MCT keeps per parameter).

A record is kept with the orbit time it reached the ground (``received``) beside the
instant it was measured on board (``measured``, the record's own ``orbit_time``): on the
testbed the two differ by the wait for a contact and the trip down. In the in-process
twin a record is the twin's model read at that instant (received = measured).

Limits come from each satellite's hardware profile: the battery's floor (critical below
it, a warning within 10 points of charge above it) and the radiator's maximum temperature
(critical above it, a warning within 5 °C below it). An alarm is raised when a received
value crosses a limit and cleared when a later one is back within; their history is kept.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from starcompute.errors import InputError
from starcompute.spacecraft.hardware import HardwareProfile
from starcompute.times import format_utc

# parameter: unit (the numbers a console plots; others stay in the record)
PARAMETERS: dict[str, str] = {
    "battery_soc": "fraction of capacity",
    "battery_wh": "Wh",
    "temperature_c": "degC",
    "sunlit": "fraction",
    "queue": "jobs",
    "jobs_run": "jobs",
    "upsets": "upsets",
    "rejected_bundles": "bundles",
    "commands_rejected": "commands",
}
SEVERITIES = ("warning", "critical")
SOC_WARNING_MARGIN = 0.10  # a warning this much state of charge above the floor
TEMP_WARNING_MARGIN_C = 5.0  # a warning this far below the radiator's maximum
KEEP_S = 24 * 3600.0  # orbit seconds of records kept per satellite


@dataclass(frozen=True, slots=True)
class Limit:
    """``parameter`` must stay above ``low`` / below ``high`` (None: no such side)."""

    parameter: str
    severity: str
    low: float | None = None
    high: float | None = None
    source: str = ""

    def crossed(self, value: float) -> bool:
        return (self.low is not None and value < self.low) or (
            self.high is not None and value > self.high
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def limits_of(hw: HardwareProfile) -> list[Limit]:
    """The limits a satellite's hardware profile sets."""
    floor_soc = hw.battery.floor_wh / hw.battery.capacity_wh
    max_c = hw.thermal.max_temp_c
    src = f"hardware profile {hw.name}"
    return [
        Limit("battery_soc", "critical", low=floor_soc, source=f"{src}: battery floor"),
        Limit(
            "battery_soc",
            "warning",
            low=floor_soc + SOC_WARNING_MARGIN,
            source=f"{src}: battery floor + {SOC_WARNING_MARGIN:g}",
        ),
        Limit("temperature_c", "critical", high=max_c, source=f"{src}: radiator maximum"),
        Limit(
            "temperature_c",
            "warning",
            high=max_c - TEMP_WARNING_MARGIN_C,
            source=f"{src}: radiator maximum - {TEMP_WARNING_MARGIN_C:g} degC",
        ),
    ]


def values_of(record: dict[str, Any]) -> dict[str, float]:
    """The plotted parameters a housekeeping record holds."""
    out: dict[str, float] = {}
    for name in PARAMETERS:
        value = record.get(name)
        if isinstance(value, dict):  # counts by reason
            value = sum(v for v in value.values() if isinstance(v, int | float))
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
    rejected = (record.get("commands") or {}).get("rejected")
    if isinstance(rejected, dict):
        out["commands_rejected"] = float(sum(rejected.values()))
    return out


def _unix_s(t: np.datetime64) -> float:
    return float(t.astype("datetime64[ms]").astype(np.int64)) / 1000.0


class TelemetryStore:
    """Housekeeping received, and the alarms it raised (SQLite; ``:memory:`` by default)."""

    def __init__(self, path: Path | str = ":memory:") -> None:
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.executescript(
            "CREATE TABLE IF NOT EXISTS housekeeping (satellite TEXT, station TEXT, "
            "received TEXT, received_unix REAL, record TEXT, received_s REAL);"
            "CREATE INDEX IF NOT EXISTS housekeeping_sat ON housekeeping (satellite, received_s);"
            "CREATE TABLE IF NOT EXISTS alarms (id INTEGER PRIMARY KEY, satellite TEXT, "
            "parameter TEXT, severity TEXT, value REAL, limit_doc TEXT, raised TEXT, "
            "cleared TEXT, last_value REAL);"
        )
        self.limits: dict[str, list[Limit]] = {}  # satellite: its limits
        # injected values: satellite -> (values, until unix s of orbit time)
        self.injected: dict[str, tuple[dict[str, float], float]] = {}

    def set_limits(self, limits: dict[str, list[Limit]]) -> None:
        self.limits = limits

    # ------------------------------------------------------------------ writing
    def add(
        self, satellite: str, station: str, received: np.datetime64, record: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Keep a record received at ``received`` (orbit time) through ``station``;
        returns the alarms it raised or cleared."""
        received_s = _unix_s(received)
        values, until_s = self.injected.get(satellite, ({}, -np.inf))
        if received_s <= until_s:
            record = {**record, **values, "injected": sorted(values)}
        self.db.execute(
            "INSERT INTO housekeeping VALUES (?, ?, ?, ?, ?, ?)",
            (satellite, station, format_utc(received), time.time(), json.dumps(record), received_s),
        )
        self.db.execute(
            "DELETE FROM housekeeping WHERE satellite = ? AND received_s < ?",
            (satellite, received_s - KEEP_S),
        )
        return self._check(satellite, values_of(record), received)

    def inject(
        self, satellite: str, values: dict[str, float], at: np.datetime64, until: np.datetime64
    ) -> list[dict[str, Any]]:
        """Hold ``values`` in every record of ``satellite`` received until ``until`` (a
        fault driven on purpose, e.g. a battery below its floor, to exercise limits and
        alarms; such records say ``injected``); one such record is received at ``at``."""
        self.injected[satellite] = (dict(values), _unix_s(until))
        record = {"satellite": satellite, "orbit_time": format_utc(at)}
        return self.add(satellite, "injected", at, record)

    def add_many(
        self, station: str, received: np.datetime64, records: Iterable[tuple[str, dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        changes: list[dict[str, Any]] = []
        self.db.execute("BEGIN")
        try:
            for satellite, record in records:
                changes += self.add(satellite, station, received, record)
        finally:
            self.db.execute("COMMIT")
        return changes

    def _check(
        self, satellite: str, values: dict[str, float], at: np.datetime64
    ) -> list[dict[str, Any]]:
        changes = []
        for parameter in {lim.parameter for lim in self.limits.get(satellite, [])}:
            if parameter not in values:
                continue
            value = values[parameter]
            worst = self._worst(satellite, parameter, value)
            active = self.db.execute(
                "SELECT id, severity FROM alarms WHERE satellite = ? AND parameter = ? "
                "AND cleared IS NULL",
                (satellite, parameter),
            ).fetchone()
            if active is not None and (worst is None or active[1] != worst.severity):
                self.db.execute(
                    "UPDATE alarms SET cleared = ?, last_value = ? WHERE id = ?",
                    (format_utc(at), value, active[0]),
                )
                changes.append({"cleared": active[0], "satellite": satellite})
            elif active is not None:
                self.db.execute("UPDATE alarms SET last_value = ? WHERE id = ?", (value, active[0]))
            if worst is not None and (active is None or active[1] != worst.severity):
                cur = self.db.execute(
                    "INSERT INTO alarms (satellite, parameter, severity, value, limit_doc, "
                    "raised, last_value) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        satellite,
                        parameter,
                        worst.severity,
                        value,
                        json.dumps(worst.to_dict()),
                        format_utc(at),
                        value,
                    ),
                )
                changes.append({"raised": cur.lastrowid, "satellite": satellite})
        return changes

    def _worst(self, satellite: str, parameter: str, value: float) -> Limit | None:
        crossed = [
            lim
            for lim in self.limits.get(satellite, [])
            if lim.parameter == parameter and lim.crossed(value)
        ]
        return max(crossed, key=lambda lim: SEVERITIES.index(lim.severity), default=None)

    # ------------------------------------------------------------------ reading
    def latest(self) -> dict[str, dict[str, Any]]:
        """Every satellite's last record, with when and where it came down."""
        rows = self.db.execute(
            "SELECT satellite, station, received, record FROM housekeeping t WHERE rowid = "
            "(SELECT MAX(rowid) FROM housekeeping WHERE satellite = t.satellite)"
        ).fetchall()
        return {
            sat: {"station": st, "received": rec, **json.loads(doc)} for sat, st, rec, doc in rows
        }

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM housekeeping").fetchone()[0])

    def series(
        self, satellite: str, parameter: str, since: np.datetime64 | None = None, limit: int = 1000
    ) -> dict[str, Any]:
        """One parameter of one satellite over time: each point at the orbit time it was
        received (``t``), with the instant it was measured on board (``measured``)."""
        if parameter not in PARAMETERS:
            raise InputError(
                f"unknown telemetry parameter {parameter!r}; known: {', '.join(PARAMETERS)}"
            )
        since_s = -np.inf if since is None else _unix_s(since)
        rows = self.db.execute(
            "SELECT received, station, record FROM housekeeping WHERE satellite = ? AND "
            "received_s >= ? ORDER BY received_s DESC, rowid DESC LIMIT ?",
            (satellite, since_s, limit),
        ).fetchall()
        points = []
        for received, station, doc in reversed(rows):
            record = json.loads(doc)
            value = values_of(record).get(parameter)
            if value is not None:
                measured = record.get("orbit_time", received)
                points.append(
                    {"t": received, "measured": measured, "value": value, "station": station}
                )
        limits = [lim for lim in self.limits.get(satellite, []) if lim.parameter == parameter]
        return {
            "satellite": satellite,
            "parameter": parameter,
            "unit": PARAMETERS[parameter],
            "limits": [lim.to_dict() for lim in limits],
            "points": points,
        }

    def alarms(self, active_only: bool = False, limit: int = 200) -> list[dict[str, Any]]:
        """Alarms, newest first (``active``: not cleared yet)."""
        where = "WHERE cleared IS NULL " if active_only else ""
        rows = self.db.execute(
            "SELECT id, satellite, parameter, severity, value, limit_doc, raised, cleared, "
            f"last_value FROM alarms {where}ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            {
                "id": i,
                "satellite": sat,
                "parameter": param,
                "severity": sev,
                "value": value,
                "last_value": last,
                "limit": json.loads(lim),
                "raised": raised,
                "cleared": cleared,
                "active": cleared is None,
            }
            for i, sat, param, sev, value, lim, raised, cleared, last in rows
        ]
