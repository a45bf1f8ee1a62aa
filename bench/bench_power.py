"""Benchmark: a full day of power, heat and radiation for star-compute-2800 at 10 s.

One command: ``.venv/bin/python bench/bench_power.py [--json]``. Target: <= 10 s wall on
the 2-core development machine. Prints the wall time, the satellite-steps per second and
what the day looked like (state of charge, throttling, eclipse, SEUs).
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np

from starcompute import load_constellation, parse_utc
from starcompute.spacecraft.simulate import simulate_power

START = "2026-06-21T00:00:00Z"  # June solstice: the dawn-dusk shells' eclipse season


def run() -> dict[str, object]:
    const = load_constellation("star-compute-2800")
    t0 = time.perf_counter()
    result = simulate_power(const, parse_utc(START), 86400.0, step_s=10.0, utilisation=1.0)
    wall = time.perf_counter() - t0
    steps = len(const) * 8640
    return {
        "constellation": "star-compute-2800",
        "start": START,
        "step_s": 10.0,
        "satellite_steps": steps,
        "wall_s": round(wall, 2),
        "satellite_steps_per_s": round(steps / wall),
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "soc_min": round(float(result.soc_min.min()), 3),
        "throttled_satellites": int(np.sum(result.throttled_min > 0)),
        "eclipse_min_mean": round(float(result.eclipse_min.mean()), 1),
        "peak_temp_c": round(float(result.peak_temp_c.max()), 1),
        "seu_per_gb_day_mean": round(float(result.seu_per_gb.mean()), 1),
        "target": "<= 10 s wall",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    figures = run()
    if parser.parse_args().json:
        print(json.dumps(figures, indent=1))
    else:
        print("\n".join(f"{k:>24}: {v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
