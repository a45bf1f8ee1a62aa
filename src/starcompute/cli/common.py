"""Argument helpers shared by the command groups."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from starcompute.errors import InputError
from starcompute.times import parse_utc


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")


def add_span(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--start",
        required=True,
        metavar="ISO8601",
        help="start time, UTC, e.g. 2025-11-20T00:00:00Z",
    )
    parser.add_argument(
        "--hours",
        required=True,
        type=float,
        metavar="H",
        help="duration in hours (> 0, at most 24 x 31)",
    )
    parser.add_argument(
        "--step",
        type=float,
        default=60.0,
        metavar="S",
        help="coarse sampling step in seconds before refinement (default 60)",
    )


def span(args: argparse.Namespace) -> tuple[np.datetime64, float]:
    start = parse_utc(args.start)
    hours = float(args.hours)
    if not (np.isfinite(hours) and 0 < hours <= 24 * 31):
        raise InputError(f"--hours must be > 0 and at most {24 * 31} (31 days), got {args.hours}")
    step = float(args.step)
    if not (np.isfinite(step) and 1.0 <= step <= 300.0):
        raise InputError(f"--step must be within 1..300 seconds, got {args.step}")
    return start, hours * 3600.0


def add_presets_command(cmds: Any, what: str, names: Callable[[], list[str]]) -> None:
    """A ``presets`` subcommand listing the built-in presets of one kind."""
    presets = cmds.add_parser(
        "presets", help=f"list the built-in {what}", description=f"List the built-in {what}."
    )
    add_json(presets)

    def run(args: argparse.Namespace) -> int:
        if args.json:
            print_json({"presets": names()})
        else:
            print("\n".join(names()))
        return 0

    presets.set_defaults(run=run)


def add_band(parser: argparse.ArgumentParser) -> None:
    from starcompute.links.budgets import RfLinkConfig

    parser.add_argument(
        "--band",
        choices=RfLinkConfig.presets("down"),
        help="rate downlinks with this RF link budget (DVB-S2, ITU-R attenuation) "
        "instead of the nominal 220 Mbps; passes on which it does not close are left out",
    )
    parser.add_argument(
        "--uplink-band",
        choices=RfLinkConfig.presets("up"),
        help="rate uplinks with this RF link budget (station EIRP into the satellite's "
        "G/T) instead of the nominal uplink rate; a pass on which it does not close "
        "carries nothing up",
    )


def add_antennas(parser: argparse.ArgumentParser) -> None:
    from starcompute.links.antennas import DEFAULT_HANDOVER_S

    parser.add_argument(
        "--antennas",
        action="store_true",
        help="a finite ground segment: only the passes the stations' antennas track "
        "(each antenna one satellite at a time; counts from the station files)",
    )
    parser.add_argument(
        "--handover",
        type=float,
        default=DEFAULT_HANDOVER_S,
        metavar="S",
        help=f"an antenna's slew and re-acquisition between passes, with --antennas "
        f"(default {DEFAULT_HANDOVER_S:g} s)",
    )


def add_backend(
    parser: argparse.ArgumentParser,
    default: str | None = "transformers",
    what: str = "inference backend",
) -> None:
    from starcompute.compute.backends import BACKENDS

    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=default,
        help=f"{what}: transformers (PyTorch, continuous batching) or llamacpp (a GGUF "
        "file; needs the [llamacpp] extra)",
    )


def add_timing_model(
    parser: argparse.ArgumentParser,
    default: str | None = None,
    what: str = "model card that times inference on the satellites' hardware "
    "(default: the served model's own card, else qwen3-8b)",
) -> None:
    parser.add_argument("--timing-model", default=default, metavar="CARD", help=what)


def handover_s(args: argparse.Namespace) -> float | None:
    """The antennas' handover with --antennas, None for every visible pass."""
    return float(args.handover) if args.antennas else None


def rf_config(args: argparse.Namespace, direction: str = "down") -> Any:
    """The RF budget asked for with --band (downlink) or --uplink-band (uplink)."""
    from starcompute.links.budgets import RfLinkConfig

    name = getattr(args, "band" if direction == "down" else "uplink_band", None)
    return RfLinkConfig.preset(name) if name else None


def print_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=1)
    sys.stdout.write("\n")


def progress_wanted() -> bool:
    return sys.stderr.isatty()
