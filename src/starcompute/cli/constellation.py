"""``starcompute constellation show|export|presets``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from starcompute.cli.common import add_json, add_presets_command, print_json
from starcompute.orbits.constellation import constellation_presets, load_constellation

SPEC_HELP = "a preset (see 'constellation presets'), a constellation TOML, a TLE or OMM file"


def register(sub: Any) -> None:
    group = sub.add_parser(
        "constellation",
        help="show, list or export constellations",
        description="Show, list or export constellations.",
    )
    cmds = group.add_subparsers(dest="action", metavar="ACTION")
    cmds.required = True

    show = cmds.add_parser(
        "show",
        help="counts per shell and role, altitudes, periods",
        description="Counts per shell and role, altitudes, inclinations, periods.",
    )
    show.add_argument("spec", metavar="PRESET|FILE", help=SPEC_HELP)
    add_json(show)
    show.set_defaults(run=run_show)

    add_presets_command(cmds, "constellations", constellation_presets)

    export = cmds.add_parser(
        "export",
        help="write element sets (3-line TLE)",
        description="Write the constellation's element sets.",
    )
    export.add_argument("spec", metavar="PRESET|FILE", help=SPEC_HELP)
    export.add_argument("--format", choices=["tle"], default="tle", help="output format")
    export.add_argument("--out", type=Path, help="output file (default: stdout)")
    export.set_defaults(run=run_export)


def run_show(args: argparse.Namespace) -> int:
    summary = load_constellation(args.spec).summary()
    if args.json:
        print_json(summary)
        return 0
    roles = ", ".join(f"{n} {r}" for r, n in summary["roles"].items())
    print(f"{summary['name']}: {summary['satellites']} satellites ({roles})")
    header = f"{'shell':<14}{'sats':>6}  {'pattern':<14}{'P x S / F':<14}{'alt km':>9}"
    print(header + f"{'incl deg':>10}{'period min':>12}  role")
    for s in summary["shells"]:
        grid = f"{s['planes']} x {s['sats_per_plane']} / {s['phasing']}" if s["planes"] else "-"
        alt, inc, per = s["altitude_km"], s["inclination_deg"], s["period_min"]
        print(
            f"{s['shell']:<14}{s['satellites']:>6}  {s['pattern']:<14}{grid:<14}"
            f"{_span(alt, 1):>9}{_span(inc, 2):>10}{_span(per, 2):>12}  " + ", ".join(s["roles"])
        )
    return 0


def _span(v: dict[str, float], digits: int) -> str:
    lo, hi = round(v["min"], digits), round(v["max"], digits)
    return f"{lo:.{digits}f}" if lo == hi else f"{lo:.{digits}f}-{hi:.{digits}f}"


def run_export(args: argparse.Namespace) -> int:
    text = load_constellation(args.spec).to_tle()
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
