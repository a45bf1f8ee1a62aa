"""``starcompute simulate`` and ``starcompute sweep``: the planner's simulator."""

from __future__ import annotations

import argparse
import contextlib
import csv
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from starcompute.cli.common import add_json, print_json, progress_wanted
from starcompute.errors import InputError
from starcompute.sim.scenario import Scenario, describe_keys, load_scenario
from starcompute.sim.world import Progress

STAGES = {
    "routing": "routing tables",
    "health": "satellite health",
    "demand": "drawing demand",
    "passes": "ground passes and antennas",
    "verify": "exact contact plan (--verify)",
    "requests": "planning requests",
    "measure": "power and metrics",
}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulate a day of a constellation with realistic demand",
        description="Run a scenario (TOML) through mission control, routing, power and the "
        "performance model; write summary.json, Parquet tables and report.html into --out.",
    )
    p.add_argument("scenario", nargs="?", type=Path, metavar="SCENARIO.toml")
    p.add_argument("--out", type=Path, metavar="DIR", help="folder for the outputs")
    p.add_argument("--hours", type=float, metavar="H", help="override duration_h")
    p.add_argument("--seed", type=int, metavar="S", help="override the random seed")
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    p.add_argument("--keys", action="store_true", help="list every scenario key and exit")
    p.add_argument(
        "--verify",
        type=int,
        default=0,
        metavar="N",
        help="plan N sampled queries again with exact contact graph routing and report "
        "how the simulator's routes compare (summary.json 'verify'; ~0.1-1 s a query)",
    )
    add_json(p)
    p.set_defaults(run=run_simulate)

    s = sub.add_parser(
        "sweep",
        help="run a scenario for every combination of varied keys, on Dask",
        description="Vary scenario keys (--vary key=v1,v2,... , repeatable), run every "
        "combination in parallel on a Dask cluster (a local one on 127.0.0.1 by default) "
        "and write sweep.csv, sweep.json and sweep.html into --out.",
    )
    s.add_argument("scenario", type=Path, metavar="SCENARIO.toml")
    s.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help='e.g. scheduler.max_batch=1,8 or ground.stations=\'"china","china,ksat,aws"\' '
        "(quote values that contain commas)",
    )
    s.add_argument("--out", type=Path, required=True, metavar="DIR")
    s.add_argument("--hours", type=float, metavar="H", help="override duration_h of every run")
    s.add_argument("--seed", type=int, metavar="S", help="override the random seed")
    s.add_argument("--scheduler", metavar="tcp://HOST:8786", help="an existing Dask scheduler")
    s.add_argument("--workers", type=int, default=2, metavar="N", help="local workers (default 2)")
    add_json(s)
    s.set_defaults(run=run_sweep)


def _scenario(args: argparse.Namespace) -> Scenario:
    if args.scenario is None:
        raise InputError("give a SCENARIO.toml (examples/ has some), or --keys to list keys")
    scenario = load_scenario(args.scenario)
    overrides: dict[str, Any] = {}
    if args.hours is not None:
        overrides["duration_h"] = args.hours
    if args.seed is not None:
        overrides["seed"] = args.seed
    return scenario.with_overrides(overrides) if overrides else scenario


def run_simulate(args: argparse.Namespace) -> int:
    if args.keys:
        return _print_keys(args.json)
    scenario = _scenario(args)
    if args.verify < 0:
        raise InputError(f"--verify must be a number of queries >= 0, got {args.verify}")
    if args.out is None:
        raise InputError("--out DIR is required: where summary.json and the tables go")
    from starcompute.sim.output import prepare_dir, write_outputs
    from starcompute.sim.run import preflight, simulate

    preflight(scenario)
    prepare_dir(args.out)
    t0 = time.perf_counter()
    with _progress() as progress:
        result = simulate(scenario, progress, verify=args.verify)
    paths = write_outputs(result, args.out, report=not args.no_report)
    wall_s = time.perf_counter() - t0
    if args.json:
        print_json(result.summary)
    else:
        _print_summary(result.summary, wall_s, paths)
    return 0


def _print_summary(s: dict[str, Any], wall_s: float, paths: dict[str, Path]) -> None:
    lat = s["latency_s"]
    print(
        f"{s['scenario']}: {s['satellites']} satellites, {s['stations']} stations, "
        f"{s['duration_h']:g} h"
    )
    print(f"  requests {s['requests']:,}  completed {s['completed']:,}  rejected {s['rejected']:,}")
    print(
        f"  latency p50 {lat['p50']:.2f} s  p95 {lat['p95']:.2f} s  p99 {lat['p99']:.2f} s  "
        f"under 120 s {100 * s['fraction_under_120s']:.1f} %"
    )
    print(
        f"  tokens/s {s['tokens_per_s']:.1f}  energy/query {s['energy_per_query_j']:.0f} J  "
        f"utilisation {100 * s['satellite_utilization_mean']:.2f} %  "
        f"battery min {100 * s['battery_soc_min']:.1f} %"
    )
    if "verify" in s:
        v, d = s["verify"], s["verify"]["delivery_delta_s"]
        same = 100 * v["same_serving_satellite"]
        print(
            f"  verify {v['compared']} of {v['requests']} queries: same satellite {same:.1f} %"
            f"  |delta delivery| p50 {d['p50']:.2f} s  p99 {d['p99']:.2f} s"
            f" (bound {v['bound_s']:g} s)"
        )
    print(f"  wrote {', '.join(str(p) for p in paths.values())} ({wall_s:.1f} s)")


def _print_keys(as_json: bool) -> int:
    rows = describe_keys()
    if as_json:
        print_json(rows)
        return 0
    width = max(len(r["key"]) for r in rows)
    for r in rows:
        print(f"{r['key']:<{width}}  {r['doc']} (default {r['default']}; {r['allowed']})")
    return 0


@contextlib.contextmanager
def _progress() -> Iterator[Progress | None]:
    """A rich progress bar on a terminal; nothing when stderr is piped."""
    if not progress_wanted():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bars = Progress(
        TextColumn("{task.description:<18}"),
        BarColumn(),
        TextColumn("{task.completed:>9,.0f}/{task.total:,.0f}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    tasks: dict[str, Any] = {}

    def update(stage: str, advance: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bars.add_task(STAGES.get(stage, stage), total=max(total, 1))
        bars.update(tasks[stage], advance=advance)

    with bars:
        yield update


def run_sweep(args: argparse.Namespace) -> int:
    from starcompute.sim.sweep import combinations, parse_vary
    from starcompute.sim.sweep import run_sweep as sweep

    base = _scenario(args)
    varies = [parse_vary(v) for v in args.vary]
    if not 1 <= args.workers <= 64:
        raise InputError(f"--workers must be within 1..64, got {args.workers}")
    from starcompute.sim.output import prepare_dir

    out = prepare_dir(args.out)
    n = len(combinations(base, varies))  # validates every combination before starting
    show = progress_wanted()

    def done(k: int, total: int) -> None:
        if show:
            print(f"\rsweep: {k}/{total} scenarios done", end="", file=sys.stderr, flush=True)

    rows = sweep(base, varies, args.scheduler, args.workers, done)
    if show:
        print(file=sys.stderr)
    _write_sweep(rows, [v.key for v in varies], out)
    if args.json:
        print_json(rows)
    else:
        print(f"{n} scenarios -> {out / 'sweep.csv'}, {out / 'sweep.html'}")
        for r in rows:
            print(
                "  "
                + "  ".join(f"{k}={r[k]}" for k in (v.key for v in varies))
                + f"  completed {r['completed']:,}  p50 {r['latency_s.p50']:.2f} s"
                + f"  under 120 s {100 * r['fraction_under_120s']:.1f} %"
            )
    return 0


def _write_sweep(rows: list[dict[str, Any]], varied: list[str], out: Path) -> None:
    import json

    from starcompute.sim.report import write_sweep_report

    with (out / "sweep.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "sweep.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    write_sweep_report(rows, varied, out / "sweep.html")
