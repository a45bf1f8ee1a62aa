"""Benchmark: a day of the full constellation with a million queries.

One command: ``.venv/bin/python bench/bench_simulate.py [--json] [--scenario FILE]``.
Runs ``examples/star-compute-2800.toml`` (24 h, ~1,000,000 queries + EO jobs) exactly as
``starcompute simulate`` does (world, demand, planning, power and metrics, Parquet tables
and the HTML report) and prints wall time per stage, events/s and peak memory (the main
process and the helper process that builds half the routing tables and the health run).

Baseline in the same run: mission control's per-query planner (``Mission.submit``, CGR
over the contact plan, the path of ``starcompute ask``) on the Three-Body example, whose
cost per query is compared with the simulator's on the same scenario.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from starcompute.sim.output import write_outputs
from starcompute.sim.run import simulate
from starcompute.sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
BIG = ROOT / "examples" / "star-compute-2800.toml"
SMALL = ROOT / "examples" / "three-body-12.toml"
MISSION_QUERIES = 200


def _rss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux: kilobytes


def run_big(path: Path) -> dict[str, Any]:
    scenario = load_scenario(path)
    stamps: dict[str, float] = {}

    def progress(stage: str, advance: int, total: int) -> None:
        stamps.setdefault(stage, time.perf_counter())

    t0 = time.perf_counter()
    result = simulate(scenario, progress)
    t_sim = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        write_outputs(result, Path(out))
    t_end = time.perf_counter()
    s = result.summary
    routing_steps = int(np.ceil(scenario.horizon_s / scenario[""]["step_s"]))
    events = 2 * s["requests"] + s["batches"] + routing_steps  # arrivals, outcomes, batches, steps
    marks = [("world", t0), *sorted(stamps.items(), key=lambda kv: kv[1]), ("outputs", t_sim)]
    ends = [t for _, t in marks[1:]] + [t_end]
    stages = {name: round(end - t, 2) for (name, t), end in zip(marks, ends, strict=True)}
    return {
        "scenario": str(path.relative_to(ROOT)),
        "requests": s["requests"],
        "completed": s["completed"],
        "batches": s["batches"],
        "events": events,
        "wall_s": round(t_end - t0, 2),
        "events_per_s": round(events / (t_end - t0)),
        "stages_s": stages,
        "peak_rss_mb_main": round(_rss_mb(resource.RUSAGE_SELF)),
        "peak_rss_mb_helper": round(_rss_mb(resource.RUSAGE_CHILDREN)),
        "latency_s": s["latency_s"],
        "fraction_under_120s": s["fraction_under_120s"],
    }


def run_baseline() -> dict[str, Any]:
    """Seconds per query: mission control's CGR planner vs the simulator, Three-Body."""
    from starcompute.errors import DeadlineError
    from starcompute.mission.control import Mission

    scenario = load_scenario(SMALL)
    t0 = time.perf_counter()
    result = simulate(scenario)
    sim_s = time.perf_counter() - t0
    per_query_sim = sim_s / result.summary["requests"]

    from starcompute.sim.world import scenario_constellation, scenario_stations

    mission = Mission.build(
        scenario_constellation(scenario),
        scenario_stations(scenario),
        scenario.start,
        scenario.horizon_s,
    )
    rng = np.random.default_rng(1)
    kind = result.requests["kind"]
    t_s = np.sort(rng.choice(result.requests["submitted_s"][kind == "query"], MISSION_QUERIES))
    t1 = time.perf_counter()
    for t in t_s:
        at = scenario.start + np.timedelta64(round(float(t) * 1e9), "ns")
        with contextlib.suppress(DeadlineError):  # rejected queries cost the same search
            mission.submit(None, at, 200, 150, 800, 600, deadline_s=7200.0)
    per_query_mission = (time.perf_counter() - t1) / MISSION_QUERIES
    return {
        "scenario": str(SMALL.relative_to(ROOT)),
        "simulator_s_per_request": per_query_sim,
        "mission_submit_s_per_query": per_query_mission,
        "ratio": per_query_mission / per_query_sim,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--scenario", type=Path, default=BIG)
    args = parser.parse_args()
    big = run_big(args.scenario.resolve())
    base = run_baseline()
    if args.json:
        print(json.dumps({"simulate": big, "baseline": base}, indent=1))
        return
    print(
        f"{big['scenario']}: {big['requests']:,} requests ({big['completed']:,} completed), "
        f"{big['batches']:,} batches"
    )
    print(
        f"  wall {big['wall_s']:.1f} s (target 60 s); {big['events_per_s']:,} events/s "
        f"({big['events']:,} events)"
    )
    print("  stages (s): " + ", ".join(f"{k} {v}" for k, v in big["stages_s"].items()))
    print(
        f"  peak RSS main {big['peak_rss_mb_main']} MB, helper {big['peak_rss_mb_helper']} MB "
        f"(target 2,048 MB together)"
    )
    mission_ms = base["mission_submit_s_per_query"] * 1e3
    print(
        f"baseline ({base['scenario']}): Mission.submit {mission_ms:.1f} "
        f"ms/query vs simulator {base['simulator_s_per_request'] * 1e3:.3f} ms/request: "
        f"{base['ratio']:.0f}x"
    )


if __name__ == "__main__":
    main()
