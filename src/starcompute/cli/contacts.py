"""``starcompute contacts``: the ground and laser-link contact plan of a time span."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from starcompute.cli.common import (
    add_antennas,
    add_band,
    add_json,
    add_span,
    print_json,
    progress_wanted,
    rf_config,
    span,
)
from starcompute.errors import InputError
from starcompute.ground.stations import load_stations
from starcompute.links.antennas import tracked_plan
from starcompute.links.config import IslConfig
from starcompute.links.contact_plan import FORMATS, ContactPlan
from starcompute.links.contacts import contact_plan
from starcompute.orbits.constellation import load_constellation


def register(sub: Any) -> None:
    p = sub.add_parser(
        "contacts",
        help="ground-satellite passes and laser-link windows",
        description="Compute the contact plan: ground-satellite passes (AOS, LOS, maximum "
        "elevation) and, with --isl, laser inter-satellite link windows.",
    )
    p.add_argument(
        "--constellation",
        required=True,
        metavar="PRESET|FILE",
        help="constellation preset, TOML, TLE or OMM file",
    )
    p.add_argument(
        "--stations",
        required=True,
        metavar="PRESET|FILE[,...]",
        help="station presets or CSV files, comma-joined (e.g. china,ksat,aws)",
    )
    add_span(p)
    p.add_argument(
        "--min-elevation",
        type=float,
        metavar="DEG",
        help="override every station's elevation mask (degrees)",
    )
    p.add_argument("--isl", action="store_true", help="also compute laser ISL windows (+grid)")
    p.add_argument("--isl-max-range", type=float, metavar="KM", help="ISL maximum range (km)")
    p.add_argument("--isl-acquisition", type=float, metavar="S", help="ISL acquisition time (s)")
    add_antennas(p)
    add_band(p)
    add_json(p)
    p.add_argument("--format", choices=FORMATS, help="file format for --out")
    p.add_argument("--out", type=Path, help="write the plan to this file")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.format and not args.out:
        raise InputError("--format needs --out FILE (or use --json for stdout)")
    start, duration_s = span(args)
    const = load_constellation(args.constellation)
    stations = load_stations(args.stations, args.min_elevation)
    isl = (
        IslConfig.default(max_range_km=args.isl_max_range, acquisition_s=args.isl_acquisition)
        if args.isl
        else None
    )
    plan = contact_plan(
        const,
        stations,
        start,
        duration_s,
        isl=isl,
        step_s=args.step,
        progress=progress_wanted(),
        rf=rf_config(args),
        rf_up=rf_config(args, "up"),
    )
    visible = len(plan.ground)
    if args.antennas:
        plan, _ = tracked_plan(plan, stations, args.handover)
        print(
            f"antennas track {len(plan.ground)} of {visible} visible passes "
            f"(handover {args.handover:g} s)",
            file=sys.stderr,
        )
    if args.out:
        fmt = args.format or _format_from_suffix(args.out)
        plan.write(args.out, fmt)
        print(
            f"wrote {len(plan.ground)} ground and {len(plan.isl)} ISL windows to {args.out}",
            file=sys.stderr,
        )
    if args.json:
        doc = plan.to_dict()
        print_json({k: doc[k] for k in ("start", "end", "ground_contacts", "isl_contacts")})
    elif not args.out:
        _print_summary(plan)
    return 0


def _format_from_suffix(path: Path) -> str:
    fmt = {".json": "json", ".csv": "csv", ".parquet": "parquet", ".ion": "ion", ".txt": "ion"}.get(
        path.suffix.lower()
    )
    if fmt is None:
        raise InputError(
            f"cannot tell the format of {path.name}: pass --format {{{','.join(FORMATS)}}}"
        )
    return fmt


def _print_summary(plan: ContactPlan) -> None:
    g = plan.ground
    print(
        f"{len(g)} ground passes, {len(plan.isl)} ISL windows, "
        f"{plan.duration_s / 3600:g} h from {plan.to_dict()['start']}"
    )
    per_station = Counter(plan.stations[i] for i in g.station.tolist())
    for name in plan.stations:
        print(f"  {name:<22}{per_station.get(name, 0):>6} passes")
    records = plan.ground_records()[:10]
    if records:
        print("first passes:")
        for r in records:
            print(
                f"  {r['aos']}  {r['los']}  {r['station']:<14} {r['satellite']:<22}"
                f" max el {r['max_elevation_deg']:5.1f} deg"
            )
