"""The operations console's API: telemetry with limits and alarms, the command history,
the pass timeline, and an Open MCT-readable telemetry feed. Thin: the ground segment
(``mission.live``) keeps the telemetry store and the command log."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from starcompute.errors import HttpError, InputError
from starcompute.gateway.schemas import TelemetryInjection
from starcompute.mission.live import GroundSegment
from starcompute.mission.telemetry import PARAMETERS, values_of
from starcompute.times import format_utc, parse_utc

Authorise = Callable[[Request], Any]


def operations(segment: GroundSegment, authorise: Authorise) -> APIRouter:
    """The console's routes over ``segment`` (writes need an API key when keys are set)."""
    router = APIRouter()
    tm = segment.telemetry

    def satellite_of(name: str) -> str:
        if name not in segment.mission.const.names:
            raise HttpError(404, f"no satellite {name!r} in the constellation", code="not_found")
        return name

    @router.get("/api/telemetry")
    async def telemetry_now() -> dict[str, Any]:
        """Every satellite's last housekeeping (when and where it came down), the active
        alarms, and the parameters that can be plotted."""
        return {
            "orbit_time": format_utc(segment.clock.now()),
            "source": segment.link.name,
            "period_s": segment.telemetry_s,
            "parameters": PARAMETERS,
            "satellites": tm.latest(),
            "alarms": tm.alarms(active_only=True),
        }

    @router.get("/api/telemetry/{satellite}")
    async def telemetry_series(
        satellite: str, parameter: str = "battery_soc", minutes: float = 60.0
    ) -> dict[str, Any]:
        """One parameter over the last ``minutes`` of orbit time, each point at the orbit
        time it was received, with the limits that apply."""
        if not 0 < minutes <= 24 * 60:
            raise HttpError(400, f"minutes must be within 0..1440, got {minutes}", param="minutes")
        since = segment.clock.now() - np.timedelta64(round(minutes * 60e3), "ms")
        try:
            return tm.series(satellite_of(satellite), parameter, since)
        except InputError as exc:
            raise HttpError.of(exc, param="parameter") from None

    @router.post("/api/telemetry")
    async def inject(body: TelemetryInjection, request: Request) -> dict[str, Any]:
        authorise(request)
        satellite = satellite_of(body.satellite)
        wrong = sorted(set(body.values) - set(PARAMETERS))
        if wrong:
            raise HttpError(
                400,
                f"unknown telemetry parameters {wrong}; known: {', '.join(PARAMETERS)}",
                param="values",
            )
        if not all(math.isfinite(v) for v in body.values.values()):
            raise HttpError(400, "telemetry values must be finite numbers", param="values")
        now = segment.clock.now()
        until = now + np.timedelta64(round(body.minutes * 60e3), "ms")
        changes = tm.inject(satellite, body.values, now, until)
        return {"received": format_utc(now), "until": format_utc(until), "alarms": changes}

    @router.get("/api/alarms")
    async def alarms(active: bool = False, limit: int = 200) -> dict[str, Any]:
        if not 1 <= limit <= 1000:
            raise HttpError(400, f"limit must be within 1..1000, got {limit}", param="limit")
        return {"alarms": tm.alarms(active_only=active, limit=limit)}

    @router.get("/api/telecommands")
    async def command_history(limit: int = 50) -> dict[str, Any]:
        """Commands sent, newest first, each with its state (queued for contact, sent,
        accepted, applied, rejected or failed with the satellite's reason)."""
        if not 1 <= limit <= 500:
            raise HttpError(400, f"limit must be within 1..500, got {limit}", param="limit")
        return {"commands": segment.commands.recent(segment.clock.now(), limit)}

    @router.get("/api/timeline")
    async def timeline(minutes: float = 90.0, before: float = 10.0) -> dict[str, Any]:
        """The contact plan from ``before`` minutes ago to ``minutes`` ahead: ground
        passes (station x satellite) and laser-link windows, for the pass timeline."""
        if not (0 < minutes <= 24 * 60 and 0 <= before <= 24 * 60):
            raise HttpError(
                400, "minutes must be within 0..1440 and before 0..1440", param="minutes"
            )
        return segment.timeline(before * 60.0, minutes * 60.0)

    _openmct(router, segment, satellite_of)
    return router


def _openmct(router: APIRouter, segment: GroundSegment, satellite_of: Callable[[str], str]) -> None:
    """Open MCT's telemetry shape: a dictionary of measurements (``<satellite>.<parameter>``)
    and historical points ``{id, timestamp (ms since 1970, received), value}``."""

    @router.get("/openmct/dictionary")
    async def dictionary() -> dict[str, Any]:
        return {
            "name": f"starcompute {segment.mission.const.name}",
            "key": "starcompute",
            "measurements": [
                {
                    "name": f"{sat} {param}",
                    "key": f"{sat}.{param}",
                    "values": [
                        {
                            "key": "value",
                            "name": param,
                            "units": unit,
                            "format": "float",
                            "hints": {"range": 1},
                        },
                        {
                            "key": "utc",
                            "source": "timestamp",
                            "name": "received",
                            "format": "utc",
                            "hints": {"domain": 1},
                        },
                    ],
                }
                for sat in segment.mission.const.names
                for param, unit in PARAMETERS.items()
            ],
        }

    @router.get("/openmct/history/{key}")
    async def history(key: str, start: float | None = None, end: float | None = None) -> list[Any]:
        sat, _, param = key.rpartition(".")
        satellite_of(sat)
        if param not in PARAMETERS:
            raise HttpError(400, f"unknown parameter {param!r} in {key!r}", param="key")
        since = None if start is None else np.datetime64(int(start), "ms")
        points = segment.telemetry.series(sat, param, since, limit=10_000)["points"]
        out = []
        for p in points:
            ms = int(parse_utc(p["t"]).astype("datetime64[ms]").astype(np.int64))
            if end is None or ms <= end:
                out.append({"id": key, "timestamp": ms, "value": p["value"]})
        return out


class TelemetryCollector(Collector):
    """Prometheus: every satellite's last received values and the active alarms."""

    def __init__(self, segment: GroundSegment) -> None:
        self.segment = segment

    def collect(self) -> Any:
        values = GaugeMetricFamily(
            "starcompute_telemetry",
            "Last received housekeeping value",
            labels=["satellite", "parameter"],
        )
        for sat, record in self.segment.telemetry.latest().items():
            for param, value in values_of(record).items():
                values.add_metric([sat, param], value)
        yield values
        active = GaugeMetricFamily(
            "starcompute_alarms_active", "Telemetry alarms not cleared", labels=["severity"]
        )
        counts = {"warning": 0, "critical": 0}
        for alarm in self.segment.telemetry.alarms(active_only=True):
            counts[alarm["severity"]] = counts.get(alarm["severity"], 0) + 1
        for severity, n in counts.items():
            active.add_metric([severity], n)
        yield active
