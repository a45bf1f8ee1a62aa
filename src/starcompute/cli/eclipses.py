"""``starcompute eclipses``: umbra and penumbra intervals of every satellite."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from starcompute.cli.common import add_json, add_span, print_json, span
from starcompute.orbits.constellation import load_constellation
from starcompute.orbits.eclipse import find_eclipses
from starcompute.orbits.propagate import propagate
from starcompute.times import format_utc, from_offsets, time_grid


def register(sub: Any) -> None:
    p = sub.add_parser(
        "eclipses",
        help="umbra and penumbra intervals per satellite",
        description="Earth-shadow intervals (conical umbra and penumbra) of every satellite.",
    )
    p.add_argument(
        "--constellation",
        required=True,
        metavar="PRESET|FILE",
        help="constellation preset, TOML, TLE or OMM file",
    )
    add_span(p)
    p.add_argument("--umbra-only", action="store_true", help="leave out the penumbral phases")
    add_json(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    start, duration_s = span(args)
    const = load_constellation(args.constellation)
    n = int(np.ceil(duration_s / args.step))
    eph = propagate(const, time_grid(start, n * args.step, args.step))
    ecl = find_eclipses(eph, penumbra=not args.umbra_only)
    keep = ecl.start_s < duration_s
    s0 = format_utc(from_offsets(start, ecl.start_s[keep]))
    s1 = format_utc(from_offsets(start, np.minimum(ecl.end_s[keep], duration_s)))
    sats = ecl.satellite[keep].tolist()
    kinds = [k for k, ok in zip(ecl.kind, keep.tolist(), strict=True) if ok]
    beta = np.round(ecl.beta_deg[keep], 2).tolist()
    rows = [
        {"satellite": const.names[s], "start": a, "end": b, "kind": k, "beta_deg": bd}
        for s, a, b, k, bd in zip(sats, s0, s1, kinds, beta, strict=True)
    ]
    if args.json:
        print_json({"eclipses": rows})
        return 0
    umbra = [r for r in rows if r["kind"] == "umbra"]
    print(f"{len(umbra)} umbra intervals, {len(rows) - len(umbra)} penumbra phases")
    for r in rows[:20]:
        print(
            f"  {r['start']}  {r['end']}  {r['kind']:<9} beta {r['beta_deg']:6.1f} deg  "
            f"{r['satellite']}"
        )
    return 0
