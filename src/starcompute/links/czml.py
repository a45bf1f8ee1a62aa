"""CZML (Cesium's time-dynamic scene format) of a constellation over a span: satellites
(sampled Earth-fixed positions, coloured by sunlight: sunlit, penumbra, umbra), ground
stations, and ground and laser links while their windows are open.

Entity ids: ``sat/<name>`` and ``gs/<name>``; links ``gl/<k>`` and ``isl/<k>``.
Reference: https://github.com/AnalyticalGraphicsInc/czml-writer/wiki/CZML-Guide (the
packet, interval and sampled-property conventions used here).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from starcompute.ground.stations import GroundStation
from starcompute.links.contact_plan import ContactPlan
from starcompute.orbits.constellation import Constellation
from starcompute.orbits.eclipse import find_eclipses
from starcompute.orbits.frames import teme_to_ecef
from starcompute.orbits.propagate import Ephemeris
from starcompute.times import format_utc, from_offsets, offsets_s

SUNLIT = [255, 214, 92, 255]
PENUMBRA = [190, 150, 110, 255]
UMBRA = [110, 120, 170, 255]
GROUND_LINK = [80, 220, 120, 200]
LASER_LINK = [90, 200, 255, 160]
MAX_LINKS = 5000  # per kind: a browser draws this many polylines comfortably


def czml_document(
    const: Constellation,
    stations: list[GroundStation],
    plan: ContactPlan,
    eph: Ephemeris,
    time_scale: float = 60.0,
    max_links: int = MAX_LINKS,
) -> list[dict[str, Any]]:
    """The whole document: a clock packet, then satellites, stations and links."""
    start, end = eph.times[0], eph.times[-1]
    doc: list[dict[str, Any]] = [_clock(const.name, start, end, time_scale)]
    doc += _satellites(const, eph)
    doc += [_station(s) for s in stations]
    doc += _links(plan, max_links, start, end)
    return doc


def _iso(t: np.datetime64) -> str:
    return str(format_utc(t))


def _interval(a: np.datetime64, b: np.datetime64) -> str:
    return f"{_iso(a)}/{_iso(b)}"


def _clock(name: str, start: np.datetime64, end: np.datetime64, scale: float) -> dict[str, Any]:
    return {
        "id": "document",
        "name": name,
        "version": "1.0",
        "clock": {
            "interval": _interval(start, end),
            "currentTime": _iso(start),
            "multiplier": scale,
            "range": "CLAMPED",  # never back to the start: the dashboard loads the next plan
            "step": "SYSTEM_CLOCK_MULTIPLIER",
        },
    }


def _satellites(const: Constellation, eph: Ephemeris) -> list[dict[str, Any]]:
    r_m = teme_to_ecef(eph.r_teme_km, eph.times) * 1000.0  # (N, T, 3)
    t_s = offsets_s(eph.times, eph.times[0])
    colours = _sunlight_colours(eph)
    whole = _interval(eph.times[0], eph.times[-1])
    out = []
    for i, name in enumerate(const.names):
        samples = np.column_stack([t_s, np.round(r_m[i], 1)]).ravel().tolist()
        out.append(
            {
                "id": f"sat/{name}",
                "name": name,
                "availability": whole,
                "description": f"{const.roles[i]} satellite, shell {const.shells[i]}, "
                f"hardware {const.hardware[i]}",
                "position": {
                    "referenceFrame": "FIXED",
                    "epoch": _iso(eph.times[0]),
                    "cartesian": samples,
                    "interpolationAlgorithm": "LAGRANGE",
                    "interpolationDegree": 5,
                },
                "point": {
                    "pixelSize": 6 if len(const) <= 100 else 3,
                    "color": colours[i],
                    "outlineWidth": 0,
                },
                "properties": {"role": const.roles[i], "shell": const.shells[i]},
            }
        )
    return out


def _sunlight_colours(eph: Ephemeris) -> list[list[dict[str, Any]]]:
    """Per satellite: colour intervals covering the span (sunlit unless in shadow)."""
    ecl = find_eclipses(eph)
    start, end_s = eph.times[0], float(offsets_s(eph.times[-1], eph.times[0]))
    out: list[list[dict[str, Any]]] = [[] for _ in range(eph.r_teme_km.shape[0])]
    cursor = [0.0] * len(out)
    for sat, a, b, kind in zip(ecl.satellite, ecl.start_s, ecl.end_s, ecl.kind, strict=True):
        i, a, b = int(sat), max(float(a), 0.0), min(float(b), end_s)
        if b <= a:
            continue
        if a > cursor[i]:
            out[i].append(_colour(start, cursor[i], a, SUNLIT))
        out[i].append(_colour(start, a, b, UMBRA if kind == "umbra" else PENUMBRA))
        cursor[i] = max(cursor[i], b)
    for i, c in enumerate(cursor):
        if c < end_s:
            out[i].append(_colour(start, c, end_s, SUNLIT))
    return out


def _colour(start: np.datetime64, a: float, b: float, rgba: list[int]) -> dict[str, Any]:
    t = from_offsets(start, [a, b])
    return {"interval": _interval(t[0], t[1]), "rgba": rgba}


def _station(s: GroundStation) -> dict[str, Any]:
    return {
        "id": f"gs/{s.name}",
        "name": s.name,
        "position": {"cartographicDegrees": [s.lon_deg, s.lat_deg, s.alt_m]},
        "point": {"pixelSize": 8, "color": {"rgba": [255, 90, 90, 255]}},
        "label": {
            "text": s.name,
            "font": "11px sans-serif",
            "pixelOffset": {"cartesian2": [8, -8]},
            "fillColor": {"rgba": [255, 255, 255, 230]},
        },
    }


def _links(
    plan: ContactPlan, max_links: int, t0: np.datetime64, t1: np.datetime64
) -> list[dict[str, Any]]:
    span = (float(offsets_s(t0, plan.start)), float(offsets_s(t1, plan.start)))
    g, isl = plan.ground, plan.isl
    sats, stations = plan.satellites, plan.stations
    out = []
    keep = np.flatnonzero((g.los_s > span[0]) & (g.aos_s < span[1]))[:max_links]
    for n, k in enumerate(keep):
        ends = (f"gs/{stations[int(g.station[k])]}", f"sat/{sats[int(g.satellite[k])]}")
        out.append(
            _link(f"gl/{n}", plan.start, float(g.aos_s[k]), float(g.los_s[k]), ends, GROUND_LINK)
        )
    keep = np.flatnonzero((isl.end_s > span[0]) & (isl.start_s < span[1]))[:max_links]
    for n, k in enumerate(keep):
        ends = (f"sat/{sats[int(isl.a[k])]}", f"sat/{sats[int(isl.b[k])]}")
        out.append(
            _link(
                f"isl/{n}", plan.start, float(isl.start_s[k]), float(isl.end_s[k]), ends, LASER_LINK
            )
        )
    return out


def _link(
    link_id: str, start: np.datetime64, a: float, b: float, ends: tuple[str, str], rgba: list[int]
) -> dict[str, Any]:
    t = from_offsets(start, [a, b])
    return {
        "id": link_id,
        "availability": _interval(t[0], t[1]),
        "polyline": {
            "positions": {"references": [f"{ends[0]}#position", f"{ends[1]}#position"]},
            "width": 1.5,
            "arcType": "NONE",
            "material": {"solidColor": {"color": {"rgba": rgba}}},
        },
    }
