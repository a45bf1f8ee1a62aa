"""``starcompute route`` and ``starcompute routes``: paths through the constellation."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from starcompute.cli.common import add_band, add_json, print_json, progress_wanted, rf_config
from starcompute.errors import InputError
from starcompute.ground.stations import load_stations
from starcompute.links.contact_plan import ContactPlan
from starcompute.links.contacts import contact_plan
from starcompute.orbits.constellation import load_constellation
from starcompute.orbits.propagate import propagate
from starcompute.routing.network import Network
from starcompute.routing.query import (
    RouteResult,
    geometric_range_fn,
    next_path_time_s,
    snapshot_route,
    store_and_forward_route,
)
from starcompute.routing.workload import run_routes
from starcompute.times import format_utc, from_offsets, parse_utc, time_grid

DEFAULT_BUNDLE_BYTES = 1e6


def _add_network(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--constellation",
        required=required,
        metavar="PRESET|FILE",
        help="constellation preset, TOML, TLE or OMM file",
    )
    p.add_argument(
        "--stations",
        required=required,
        metavar="PRESET|FILE[,...]",
        help="station presets or CSV files, comma-joined",
    )
    p.add_argument(
        "--min-elevation",
        type=float,
        metavar="DEG",
        help="override every station's elevation mask (degrees)",
    )
    p.add_argument(
        "--ground-relays", action="store_true", help="allow ground stations as intermediate hops"
    )
    add_band(p)


def register(sub: Any) -> None:
    r = sub.add_parser(
        "route",
        help="one route between two nodes at a time",
        description="Shortest-delay route between two satellites or stations at an instant, "
        "or with --store-and-forward the earliest-arrival route over future contacts.",
    )
    _add_network(r, required=False)
    r.add_argument("--from", dest="src", required=True, metavar="NODE", help="station or satellite")
    r.add_argument("--to", dest="dst", required=True, metavar="NODE", help="station or satellite")
    r.add_argument("--at", required=True, metavar="ISO8601", help="departure time, UTC")
    r.add_argument(
        "--bytes",
        type=float,
        metavar="N",
        help="message size in bytes, > 0 (adds serialization delay; default: none for an "
        "instant route, 1 MB for store-and-forward)",
    )
    r.add_argument(
        "--store-and-forward",
        action="store_true",
        help="wait on nodes for future contacts (contact graph routing)",
    )
    r.add_argument(
        "--horizon-hours",
        type=float,
        default=24.0,
        metavar="H",
        help="how far ahead to plan contacts (default 24)",
    )
    r.add_argument(
        "--plan",
        type=Path,
        metavar="FILE",
        help="route over this contact plan (JSON from 'contacts --out') instead",
    )
    add_json(r)
    r.set_defaults(run=run_route)

    rs = sub.add_parser(
        "routes",
        help="all station-pair routes over a time span",
        description="Shortest paths between every pair of ground stations at every time "
        "step (the forwarding-state workload of LEO network simulators).",
    )
    _add_network(rs)
    rs.add_argument("--start", required=True, metavar="ISO8601", help="start time, UTC")
    rs.add_argument("--seconds", required=True, type=float, metavar="S", help="span in seconds")
    rs.add_argument("--step", required=True, type=float, metavar="SECONDS", help="time step")
    rs.add_argument("--out", type=Path, metavar="FILE", help="write rows to .parquet or .csv")
    add_json(rs)
    rs.set_defaults(run=run_routes_cmd)


def _network(args: argparse.Namespace) -> Network:
    if not args.constellation or not args.stations:
        raise InputError("--constellation and --stations are required (or --plan FILE)")
    const = load_constellation(args.constellation)
    stations = load_stations(args.stations, args.min_elevation)
    return Network(
        const,
        stations,
        ground_relays=args.ground_relays,
        rf=rf_config(args),
        rf_up=rf_config(args, "up"),
    )


def run_route(args: argparse.Namespace) -> int:
    at = parse_utc(args.at)
    if args.bytes is not None and not (np.isfinite(args.bytes) and args.bytes > 0):
        raise InputError(f"--bytes must be a size > 0 in bytes, got {args.bytes:g}")
    if args.plan is not None:
        return _route_on_plan(args, ContactPlan.read_json(args.plan), at)
    net = _network(args)
    net.links = Network.build(net.const, net.stations, at).links
    if args.store_and_forward:
        plan, eph = _plan_from(net, at, args.horizon_hours)
        size = args.bytes or DEFAULT_BUNDLE_BYTES
        res = store_and_forward_route(
            plan, args.src, args.dst, at, size, args.ground_relays, geometric_range_fn(net, eph)
        )
        return _report(res, args, f"no store-and-forward route within {args.horizon_hours:g} h")
    res = snapshot_route(net, args.src, args.dst, at, args.bytes or 0.0)
    if res is None:
        plan, _ = _plan_from(net, at, args.horizon_hours)
        nxt = next_path_time_s(plan, args.src, args.dst, 0.0, args.ground_relays)
        when = (
            f"the next path exists at {format_utc(from_offsets(at, [nxt])[0])}"
            if nxt is not None
            else f"none within {args.horizon_hours:g} h"
        )
        print(
            f"starcompute: no path from {args.src} to {args.dst} at {format_utc(at)}; {when} "
            "(or use --store-and-forward)",
            file=sys.stderr,
        )
        return 1
    return _report(res, args, "")


def _plan_from(net: Network, at: np.datetime64, hours: float) -> tuple[ContactPlan, Any]:
    if not (np.isfinite(hours) and 0 < hours <= 24 * 31):
        raise InputError(f"--horizon-hours must be > 0 and at most 744, got {hours}")
    plan = contact_plan(
        net.const,
        net.stations,
        at,
        hours * 3600.0,
        isl=net.isl,
        progress=progress_wanted(),
        rf=net.rf,
        rf_up=net.rf_up,
    )
    grid = time_grid(at, np.ceil(hours * 3600.0 / 60.0) * 60.0, 60.0)
    return plan, propagate(net.const, grid)


def _route_on_plan(args: argparse.Namespace, plan: ContactPlan, at: np.datetime64) -> int:
    if not args.store_and_forward:
        raise InputError("--plan routes over contacts: add --store-and-forward")
    res = store_and_forward_route(
        plan, args.src, args.dst, at, args.bytes or DEFAULT_BUNDLE_BYTES, args.ground_relays
    )
    return _report(res, args, "no store-and-forward route within the plan")


def _report(res: RouteResult | None, args: argparse.Namespace, none_message: str) -> int:
    if res is None:
        print(f"starcompute: {none_message} from {args.src} to {args.dst}", file=sys.stderr)
        return 1
    doc = res.to_dict()
    if args.json:
        print_json(doc)
        return 0
    print(f"{' > '.join(doc['path'])}")
    for h in doc["hops"]:
        print(
            f"  {h['depart']}  {h['from']:<22} -> {h['to']:<22} {h['range_km']:>9.1f} km  "
            f"arrive {h['arrive']}"
        )
    print(f"one-way delay {doc['one_way_delay_ms']:.3f} ms, arrival {doc['arrival']}")
    return 0


def run_routes_cmd(args: argparse.Namespace) -> int:
    start = parse_utc(args.start)
    if not (np.isfinite(args.seconds) and 0 <= args.seconds <= 86400 * 7):
        raise InputError(f"--seconds must be within 0..604800, got {args.seconds}")
    if not (np.isfinite(args.step) and args.step > 0):
        raise InputError(f"--step must be > 0 seconds, got {args.step}")
    if args.out and args.out.suffix.lower() not in (".parquet", ".csv"):
        raise InputError(f"--out must end in .parquet or .csv, got {args.out.name}")
    net = _network(args)
    net.links = Network.build(net.const, net.stations, start).links
    run = run_routes(net, time_grid(start, args.seconds, args.step), progress=progress_wanted())
    if args.out:
        writer = pq.write_table if args.out.suffix.lower() == ".parquet" else pa_csv.write_csv
        writer(run.table, args.out)
    mean_step_s = float(run.step_wall_s.mean())
    summary: dict[str, Any] = {
        "steps": len(run.step_wall_s),
        "pairs": run.pairs,
        "mean_step_wall_s": round(mean_step_s, 4),
        "per_step_wall_s": [round(float(x), 4) for x in run.step_wall_s],
        "unreachable_pairs": run.unreachable,
        "out": str(args.out) if args.out else None,
    }
    if args.json:
        print_json(summary)
    else:
        print(
            f"{summary['steps']} steps x {run.pairs} station pairs, "
            f"{mean_step_s * 1e3:.1f} ms per step, "
            f"{sum(run.unreachable)} unreachable pair-steps"
            + (f"; wrote {args.out}" if args.out else "")
        )
    return 0
