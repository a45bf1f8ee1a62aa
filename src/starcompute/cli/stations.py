"""``starcompute stations show|presets``."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from starcompute.cli.common import add_json, add_presets_command, print_json
from starcompute.ground.stations import load_stations, station_presets


def register(sub: Any) -> None:
    group = sub.add_parser(
        "stations",
        help="show or list ground-station sets",
        description="Show or list ground-station sets.",
    )
    cmds = group.add_subparsers(dest="action", metavar="ACTION")
    cmds.required = True
    show = cmds.add_parser(
        "show",
        help="list the stations of presets or CSV files",
        description="List stations of presets or CSV files (comma-joined).",
    )
    show.add_argument(
        "spec",
        metavar="PRESET|FILE[,...]",
        help="e.g. china,ksat,aws or my.csv (name,lat_deg,lon_deg[,alt_m,min_elevation_deg,"
        "antennas,antennas_source])",
    )
    add_json(show)
    show.set_defaults(run=run_show)
    add_presets_command(cmds, "station sets", station_presets)


def run_show(args: argparse.Namespace) -> int:
    stations = load_stations(args.spec)
    if args.json:
        print_json({"stations": [asdict(s) for s in stations]})
        return 0
    print(f"{'name':<22}{'lat deg':>9}{'lon deg':>10}{'alt m':>8}{'mask deg':>10}  antennas")
    for s in stations:
        print(
            f"{s.name:<22}{s.lat_deg:>9.3f}{s.lon_deg:>10.3f}{s.alt_m:>8.0f}"
            f"{s.min_elevation_deg:>10.1f}  {s.antennas} ({s.antennas_source})"
        )
    return 0
