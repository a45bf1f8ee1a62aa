"""What the constellation looks like now, for the dashboard and the operator API:
contacts open or opening, every satellite's position and health, the upset rate."""

from __future__ import annotations

from typing import Any

import numpy as np

from starcompute.mission.control import Mission
from starcompute.mission.health import profile
from starcompute.times import format_utc, from_offsets, offsets_s


def contacts(
    m: Mission, now: np.datetime64, window_s: float, before_s: float = 0.0
) -> dict[str, Any]:
    """Ground and laser-link windows open at ``now`` or opening within ``window_s`` (and
    those that closed in the ``before_s`` seconds before ``now``); on a finite ground
    segment each pass names the station's antenna that tracks it."""
    t = float(offsets_s(now, m.plan.start))
    g, isl = m.plan.ground, m.plan.isl
    names, stations = m.plan.satellites, m.plan.stations
    ground = np.flatnonzero((g.los_s > t - before_s) & (g.aos_s < t + window_s))
    lasers = np.flatnonzero((isl.end_s > t - before_s) & (isl.start_s < t + window_s))

    def at(seconds: float) -> str:
        return str(format_utc(from_offsets(m.plan.start, [seconds])[0]))

    return {
        "orbit_time": format_utc(now),
        "ground": [
            {
                "station": stations[int(g.station[k])],
                "satellite": names[int(g.satellite[k])],
                "aos": at(float(g.aos_s[k])),
                "los": at(float(g.los_s[k])),
                "open": bool(g.aos_s[k] <= t < g.los_s[k]),
                **({} if m.antenna is None else {"antenna": int(m.antenna[k])}),
            }
            for k in ground
        ],
        "isl": [
            {
                "a": names[int(isl.a[k])],
                "b": names[int(isl.b[k])],
                "start": at(float(isl.start_s[k])),
                "end": at(float(isl.end_s[k])),
                "open": bool(isl.start_s[k] <= t < isl.end_s[k]),
            }
            for k in lasers
        ],
    }


def geodetic(m: Mission, now: np.datetime64) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """(plan seconds now, and every satellite's latitude, longitude deg, altitude km)."""
    from starcompute.orbits.frames import ecef_to_geodetic

    t_s = float(offsets_s(now, m.plan.start))
    t_s = min(max(t_s, 0.0), m.plan.duration_s)
    r = m.eph.r_ecef_at(np.arange(m.n_sat), np.full(m.n_sat, t_s))
    lat, lon, alt = ecef_to_geodetic(r)
    return t_s, lat, lon, alt


def mean_seu_rate(m: Mission, now: np.datetime64) -> float:
    """The constellation's mean upset rate now (/bit/day): the radiation model at every
    satellite's position (one engine stands for all the serving satellites)."""
    from starcompute.spacecraft.radiation import seu_rate_per_bit_per_day

    _, lat, lon, alt = geodetic(m, now)
    return float(np.mean(seu_rate_per_bit_per_day(lat, lon, alt)))


def positions(m: Mission, now: np.datetime64) -> dict[str, Any]:
    """Every satellite now: sub-satellite point, altitude, sunlit, battery, role."""
    t_s, lat, lon, alt = geodetic(m, now)
    out = []
    for i in range(m.n_sat):
        energy, temp = m.health.at(i, t_s) if m.health else (float("nan"), float("nan"))
        capacity = profile(m.const.hardware[i]).battery.capacity_wh
        out.append(
            {
                "name": m.const.names[i],
                "role": m.const.roles[i],
                "shell": m.const.shells[i],
                "lat_deg": round(float(lat[i]), 4),
                "lon_deg": round(float(lon[i]), 4),
                "alt_km": round(float(alt[i]), 3),
                "sunlit": m.health.sunlit_at(i, t_s) if m.health else None,
                "battery_soc": round(energy / capacity, 4),
                "temperature_c": round(temp, 2),
            }
        )
    return {"orbit_time": format_utc(now), "satellites": out}


def housekeeping(
    m: Mission, now: np.datetime64, queue: dict[str, int]
) -> list[tuple[str, dict[str, Any]]]:
    """Every satellite's housekeeping as the twin models it at ``now`` (battery and
    radiator from the planned power run, sunlight, the queries it holds): what the
    testbed's nodes send down as bundles, read here at the instant itself."""
    t_s = float(offsets_s(now, m.plan.start))
    t_s = min(max(t_s, 0.0), m.plan.duration_s)
    out = []
    for i, name in enumerate(m.const.names):
        hw = profile(m.const.hardware[i])
        record: dict[str, Any] = {
            "satellite": name,
            "role": m.const.roles[i],
            "orbit_time": format_utc(now),
            "queue": queue.get(name, 0),
            "source": "twin model",
        }
        if m.health is not None:
            energy, temp = m.health.at(i, t_s)
            record.update(
                battery_wh=round(energy, 3),
                battery_soc=round(energy / hw.battery.capacity_wh, 4),
                battery_floor_wh=hw.battery.floor_wh,
                temperature_c=round(temp, 2),
                max_temperature_c=hw.thermal.max_temp_c,
                sunlit=1.0 if m.health.sunlit_at(i, t_s) else 0.0,
            )
        out.append((name, record))
    return out
