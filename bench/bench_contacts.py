"""Benchmark: the 24-hour contact plan of star-compute-2800 with the Chinese, KSAT and AWS
stations. One command: ``.venv/bin/python bench/bench_contacts.py [--json]``.

Prints wall seconds for propagation, ground contacts and ISL contacts, the process's peak
memory, the number of windows, and, measured in the same run, the cost of brute
1-second SGP4 stepping (one hour of it, scaled to 24 h) as the baseline ratio.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import numpy as np

from starcompute import IslConfig, load_constellation, load_stations, parse_utc, time_grid
from starcompute.links.contacts import ground_contacts, isl_contacts
from starcompute.links.topology import plus_grid
from starcompute.orbits.propagate import propagate
from starcompute.times import to_jd

CONSTELLATION = "star-compute-2800"
STATIONS = "china,ksat,aws"
START = "2026-01-01T00:00:00Z"
HOURS = 24.0
STEP_S = 60.0


def _timed(fn, *args):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def run() -> dict[str, object]:
    const = load_constellation(CONSTELLATION)
    stations = load_stations(STATIONS)
    start = parse_utc(START)
    duration_s = HOURS * 3600.0
    grid = time_grid(start, duration_s, STEP_S)
    eph, t_prop = _timed(propagate, const, grid)
    ground, t_ground = _timed(ground_contacts, eph, stations)
    ground = ground.clipped(duration_s)

    def isl_plan():  # type: ignore[no-untyped-def]
        links = plus_grid(const, eph.r_teme_km[:, 0], eph.v_teme_km_s[:, 0])
        return isl_contacts(eph, links, IslConfig.default()).clipped(duration_s), len(links)

    (isl, n_links), t_isl = _timed(isl_plan)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    # baseline: brute 1-s SGP4 stepping of the same constellation, one hour of it x 24
    jd, fr = to_jd(time_grid(start, 3600.0, 1.0))
    t0 = time.perf_counter()
    for i in range(0, len(jd), 600):
        const.array.sgp4(jd[i : i + 600], fr[i : i + 600])
    brute_24h_s = (time.perf_counter() - t0) * HOURS
    total = t_prop + t_ground + t_isl
    return {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "constellation": CONSTELLATION,
        "satellites": len(const),
        "stations": len(stations),
        "hours": HOURS,
        "propagation_s": round(t_prop, 2),
        "ground_contacts_s": round(t_ground, 2),
        "isl_contacts_s": round(t_isl, 2),
        "total_s": round(total, 2),
        "peak_memory_mb": round(peak_mb),
        "ground_windows": len(ground),
        "isl_links": n_links,
        "isl_windows": len(isl),
        "ground_pass_median_s": round(float(np.median(ground.los_s - ground.aos_s)), 1),
        "brute_1s_sgp4_24h_s_estimated": round(brute_24h_s, 1),
        "speedup_vs_brute_sgp4_alone": round(brute_24h_s / total, 1),
        "target": "whole plan <= 30 s wall, <= 2 GB peak memory",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    figures = run()
    if args.json:
        print(json.dumps(figures, indent=1))
        return
    for key, value in figures.items():
        print(f"{key:>32}: {value}")


if __name__ == "__main__":
    main()
