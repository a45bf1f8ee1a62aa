"""``starcompute node``: the flight software of one satellite (or plain relays)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from starcompute.cli.common import add_backend, add_json, add_timing_model, print_json


def register(sub: Any) -> None:
    p = sub.add_parser(
        "node",
        help="run a satellite's flight software (bundle agent, jobs, engine) as this process",
        description="Run the node of each data directory (one satellite; several plain "
        "relays may share a process): its bundle agent listens on its address and reaches "
        "its neighbours through the link emulator; verified jobs run on its own engine. "
        "`starcompute testbed` provisions the data directories and starts the nodes.",
    )
    p.add_argument(
        "--data",
        type=Path,
        action="append",
        required=True,
        metavar="DIR",
        help="the node's data directory (node.toml, keys, plan, model, store); repeat for "
        "relays sharing this process",
    )
    p.add_argument("--pace", choices=("hardware", "host"), help="override node.toml's pace")
    p.add_argument("--telemetry-s", type=float, metavar="S", help="housekeeping period, orbit s")
    add_backend(p, default=None, what="override node.toml's backend")
    p.add_argument(
        "--seu-protect",
        action="store_true",
        default=None,
        help="scrub the weights' checksums around every batch (overrides node.toml)",
    )
    p.add_argument(
        "--dual",
        action="store_true",
        default=None,
        help="with --seu-protect: run every batch twice, release it only if both agree",
    )
    add_timing_model(p, default=None, what="override node.toml's timing card")
    p.add_argument(
        "--status", action="store_true", help="print what the data directory says and exit"
    )
    add_json(p)
    p.set_defaults(run=run_node)


def run_node(args: argparse.Namespace) -> int:
    if args.status:
        return _status(args)
    from starcompute.node.process import run_nodes

    return run_nodes(
        args.data,
        pace=args.pace,
        telemetry_s=args.telemetry_s,
        backend=args.backend,
        seu_protect=args.seu_protect,
        dual=args.dual,
        timing_card=args.timing_model,
    )


def _status(args: argparse.Namespace) -> int:
    from starcompute.dtn.store import BundleStore
    from starcompute.node.config import DB, NodeConfig
    from starcompute.node.runtime import node_status

    out = {}
    for data in args.data:
        config = NodeConfig.load(data)
        store = BundleStore(data / DB)
        try:
            out[config.name] = node_status(store)
        finally:
            store.close()
    if args.json:
        print_json(out)
        return 0
    for name, s in out.items():
        print(
            f"{name}: {s['counters'].get('jobs-run', 0)} jobs in {s['engine_calls']} engine "
            f"calls; holds {s['store']['forward']} to forward, {s['store']['local']} for itself; "
            f"rejected jobs {s['rejected_jobs'] or 0}, bundles {s['rejected_bundles'] or 0}"
        )
    return 0
