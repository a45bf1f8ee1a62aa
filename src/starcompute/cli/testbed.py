"""``starcompute testbed``: the constellation as processes, one node per satellite, the
link emulator between them, the ground segment (and the OpenAI gateway) on top."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from starcompute.cli.common import add_json, print_json
from starcompute.compute.real import DTYPES
from starcompute.errors import InputError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "testbed",
        help="run the constellation as processes: a node per satellite, the link emulator, "
        "the ground segment and the gateway",
        description="Provision a run folder and start the link emulator, one node process "
        "per satellite (--satellites: the rest as plain relays in one process), the ground "
        "segment and with --serve the OpenAI gateway. Bytes pass between nodes and stations "
        "only while the contact plan has their link up, delayed by light time and shaped "
        "to the link's rate. Ctrl-C or SIGTERM stops every process.",
    )
    p.add_argument(
        "--constellation",
        default="three-body-12",
        metavar="PRESET|FILE",
        help="constellation (default three-body-12)",
    )
    p.add_argument(
        "--stations",
        default="china,ksat,aws",
        metavar="PRESET|FILE[,...]",
        help="ground stations, each a bundle endpoint (default china,ksat,aws)",
    )
    p.add_argument(
        "--start",
        metavar="ISO8601",
        help="orbit time when every process is up (the clock starts then; default: now)",
    )
    p.add_argument("--hours", type=float, default=24.0, metavar="H", help="span of the plan (24)")
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        metavar="X",
        help="orbit seconds per wall second (delays and rates scale with it)",
    )
    p.add_argument(
        "--model", metavar="PATH", help="checkpoint directory or .gguf (default SmolLM2)"
    )
    p.add_argument(
        "--dtype",
        choices=DTYPES,
        default="bfloat16",
        help="the nodes' weights: bfloat16 (default; half the memory, a bfloat16 copy of the "
        "checkpoint is made once beside it) or float32",
    )
    p.add_argument(
        "--satellites",
        metavar="SAT[,SAT...]",
        help="satellites that run a node with an engine (default all; the rest relay)",
    )
    p.add_argument(
        "--manifest",
        type=Path,
        metavar="FILE",
        help="TOML: host:port of the emulator, gateway and each endpoint",
    )
    p.add_argument("--serve", action="store_true", help="run the OpenAI gateway on the ground")
    p.add_argument("--host", metavar="HOST", help="gateway bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, metavar="P", help="gateway port (default 8000)")
    p.add_argument(
        "--dir", type=Path, metavar="DIR", help="run folder (default: a new one in the cache)"
    )
    p.add_argument("--resume", action="store_true", help="start the run in --dir again as it is")
    p.add_argument(
        "--pace",
        choices=("hardware", "host"),
        default="hardware",
        help="release answers at the satellite hardware's predicted time or as computed",
    )
    p.add_argument(
        "--timing-model",
        default="qwen3-8b",
        metavar="CARD",
        help="model card timing the satellites' inference (hardware pace)",
    )
    p.add_argument(
        "--telemetry-s",
        type=float,
        default=300.0,
        metavar="S",
        help="housekeeping period of every node, orbit seconds (300)",
    )
    p.add_argument(
        "--silence-s",
        type=float,
        default=600.0,
        metavar="S",
        help="orbit seconds past a planned delivery before mission control takes a silent "
        "serving satellite as failed and plans the query again (600)",
    )
    p.set_defaults(run=run_testbed)
    cmds = p.add_subparsers(dest="what", metavar="COMMAND")
    s = cmds.add_parser("status", help="the processes of a running testbed and the links up now")
    s.add_argument("--dir", type=Path, metavar="DIR", help="run folder (default: the latest)")
    add_json(s)
    s.set_defaults(run=run_status)
    e = cmds.add_parser("emulator", help="(started by the launcher) the link emulator of a run")
    e.add_argument("--dir", type=Path, required=True, metavar="DIR")
    e.set_defaults(run=lambda a: _internal("emulator", a))
    g = cmds.add_parser("ground", help="(started by the launcher) the ground segment of a run")
    g.add_argument("--dir", type=Path, required=True, metavar="DIR")
    g.add_argument("--serve", action="store_true")
    g.set_defaults(run=lambda a: _internal("ground", a))


def _internal(what: str, args: argparse.Namespace) -> int:
    from starcompute.testbed.processes import run_emulator, run_ground

    return run_emulator(args.dir) if what == "emulator" else run_ground(args.dir, args.serve)


def run_testbed(args: argparse.Namespace) -> int:
    from starcompute.testbed.launcher import Options, run

    if not (args.time_scale > 0 and args.time_scale < 1e6):
        raise InputError(f"--time-scale must be within 0..1e6 (exclusive), got {args.time_scale}")
    if not args.telemetry_s > 0:
        raise InputError(f"--telemetry-s must be > 0, got {args.telemetry_s}")
    if not args.silence_s > 0:
        raise InputError(f"--silence-s must be > 0, got {args.silence_s}")
    sats = [s.strip() for s in args.satellites.split(",") if s.strip()] if args.satellites else None
    opts = Options(
        constellation=args.constellation,
        stations=args.stations,
        start=args.start,
        hours=args.hours,
        time_scale=args.time_scale,
        model=args.model,
        dtype=args.dtype,
        satellites=sats,
        manifest=args.manifest,
        serve=args.serve,
        host=args.host,
        port=args.port,
        run=args.dir,
        resume=args.resume,
        pace=args.pace,
        telemetry_s=args.telemetry_s,
        timing_card=args.timing_model,
        silence_s=args.silence_s,
    )
    return run(opts)


def run_status(args: argparse.Namespace) -> int:
    from starcompute.testbed.launcher import latest_run
    from starcompute.testbed.status import status

    doc = status(args.dir or latest_run())
    if args.json:
        print_json(doc)
        return 0
    print(f"run {doc['run']}  orbit time {doc.get('orbit_time', '?')}")
    for p in doc["processes"]:
        state = "up" if p.get("alive") else "DOWN"
        print(
            f"  {p['role']:8} {p['name']:24} pid {p['pid']!s:>7} {state:4} {p['address']:22} "
            f"RSS {p.get('rss_mb', 0):7.1f} MB  PSS {p.get('pss_mb', 0):7.1f} MB"
        )
    t = doc["total"]
    print(f"  together: {t['processes']} processes, RSS {t['rss_mb']:.0f} MB, ", end="")
    print(f"PSS {t['pss_mb']:.0f} MB")
    if doc.get("links_up") is None:
        print(f"  {doc.get('emulator_error')}")
    else:
        for link in doc["links_up"]:
            print(f"  link {link['a']} - {link['b']} ({link['kind']}) until {link['until']}")
    return 0
