"""``starcompute power``: battery, heat and radiation of every satellite over a span."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from starcompute.cli.common import add_json, print_json, progress_wanted, span
from starcompute.errors import InputError
from starcompute.orbits.constellation import load_constellation
from starcompute.spacecraft.hardware import load_hardware
from starcompute.spacecraft.simulate import ChunkSink, simulate_power
from starcompute.times import DatetimeArray, FloatArray, format_utc


def register(sub: Any) -> None:
    p = sub.add_parser(
        "power",
        help="state of charge, temperature, throttling and radiation per satellite",
        description="Integrate solar input, battery, radiator temperature and radiation of "
        "every satellite; the accelerator is throttled at the battery floor or the maximum "
        "temperature.",
    )
    p.add_argument(
        "--constellation",
        required=True,
        metavar="PRESET|FILE",
        help="constellation preset, TOML, TLE or OMM file",
    )
    p.add_argument("--start", required=True, metavar="ISO8601", help="start time, UTC")
    p.add_argument("--hours", required=True, type=float, metavar="H", help="duration in hours")
    p.add_argument(
        "--step",
        type=float,
        default=10.0,
        metavar="S",
        help="integration step in seconds (default 10)",
    )
    p.add_argument(
        "--load",
        type=float,
        default=1.0,
        metavar="UTIL",
        help="requested accelerator utilisation 0..1 (default 1)",
    )
    p.add_argument(
        "--hardware",
        metavar="PROFILE|FILE",
        help="use this hardware profile for every satellite (preset or TOML)",
    )
    p.add_argument(
        "--initial-soc",
        type=float,
        default=1.0,
        metavar="F",
        help="state of charge at the start, 0..1 (default 1)",
    )
    add_json(p)
    p.add_argument("--out", type=Path, metavar="FILE.parquet", help="write the time series")
    p.set_defaults(run=run)


def _parquet_sink(path: Path) -> tuple[ChunkSink, list[pq.ParquetWriter]]:
    writers: list[pq.ParquetWriter] = []

    def sink(times: DatetimeArray, sats: Any, series: dict[str, FloatArray]) -> None:
        n, n_t = series["soc"].shape
        columns: dict[str, Any] = {
            "satellite": np.repeat(sats, n_t).astype(np.int32),
            "time": pa.array(np.tile(times, n), pa.timestamp("ns", "UTC")),
        }
        columns.update({k: v.ravel().astype(np.float32) for k, v in series.items()})
        table = pa.table(columns)
        if not writers:
            writers.append(pq.ParquetWriter(path, table.schema))
        writers[0].write_table(table)

    return sink, writers


def run(args: argparse.Namespace) -> int:
    start, duration_s = span(_as_span(args))
    if args.out and args.out.suffix.lower() != ".parquet":
        raise InputError(f"--out must end in .parquet, got {args.out.name}")
    const = load_constellation(args.constellation)
    if args.hardware:
        load_hardware(args.hardware)  # validate before the long run
        const.hardware = [args.hardware] * len(const)
    sink, writers = _parquet_sink(args.out) if args.out else (None, [])
    try:
        run_ = simulate_power(
            const,
            start,
            duration_s,
            args.step,
            args.load,
            args.initial_soc,
            sink=sink,
            progress=progress_wanted(),
        )
    finally:
        for w in writers:
            w.close()
    records = run_.records()
    totals = _totals(run_, records)
    if args.json:
        print_json(
            {
                "start": format_utc(start),
                "hours": args.hours,
                "step_s": args.step,
                "load": args.load,
                "summary": totals,
                "satellites": records,
            }
        )
    else:
        _print_text(records, totals)
    if args.out:
        print(f"wrote the time series to {args.out}", file=sys.stderr)
    return 0


def _as_span(args: argparse.Namespace) -> argparse.Namespace:
    """``span`` validates --step within 1..300 s; the power step may go down to 0.1 s."""
    if not (np.isfinite(args.step) and 0.1 <= args.step <= 600.0):
        raise InputError(f"--step must be within 0.1..600 seconds, got {args.step}")
    return argparse.Namespace(start=args.start, hours=args.hours, step=60.0)


def _totals(run_: Any, records: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "satellites": len(records),
        "soc_min": round(float(run_.soc_min.min()), 4),
        "throttled_satellites": int(np.sum(run_.throttled_min > 0)),
        "throttled_min_total": round(float(run_.throttled_min.sum()), 1),
        "compute_energy_wh_total": round(float(run_.accelerator_wh.sum()), 1),
        "peak_temp_c": round(float(run_.peak_temp_c.max()), 2),
        "eclipse_min_mean": round(float(run_.eclipse_min.mean()), 2),
        "seu_per_gb_mean": round(float(run_.seu_per_gb.mean()), 3),
    }


def _print_text(records: list[dict[str, Any]], totals: dict[str, Any]) -> None:
    head = (
        f"{'satellite':<22}{'soc min':>8}{'soc max':>8}{'eclipse min':>12}"
        f"{'compute Wh':>11}{'throttled min':>14}{'peak degC':>10}{'SEU/GB':>9}"
    )
    print(head)
    for r in records[:20]:
        print(
            f"{r['satellite']:<22}{r['soc_min']:>8.3f}{r['soc_max']:>8.3f}"
            f"{r['eclipse_min']:>12.1f}{r['compute_energy_wh']:>11.0f}"
            f"{r['throttled_min']:>14.1f}{r['peak_temp_c']:>10.1f}{r['seu_per_gb']:>9.1f}"
        )
    if len(records) > 20:
        print(f"... {len(records) - 20} more (use --json for all)")
    print(
        f"{totals['satellites']} satellites: min state of charge {totals['soc_min']:.3f}, "
        f"{totals['throttled_satellites']} throttled, peak {totals['peak_temp_c']:.1f} degC, "
        f"{totals['compute_energy_wh_total'] / 1000:.1f} kWh of compute"
    )
