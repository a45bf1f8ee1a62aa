"""``starcompute ask | demo | availability``: the ground -> orbit -> ground experiment."""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any

import numpy as np

from starcompute.cli.common import (
    add_antennas,
    add_backend,
    add_json,
    add_timing_model,
    handover_s,
    print_json,
    progress_wanted,
)
from starcompute.compute.backends import load_engine
from starcompute.compute.cards import FALLBACK_CARD, timing_card
from starcompute.compute.checkpoints import DEFAULT_MODEL
from starcompute.errors import DeadlineError, InputError
from starcompute.ground.stations import GroundStation, load_stations
from starcompute.mission.availability import HEADLINE_S, availability
from starcompute.mission.control import Mission
from starcompute.mission.policy import DEFAULT_POLICY, POLICIES
from starcompute.mission.service import Answer, ask
from starcompute.mission.traffic import answer_bytes, query_bytes_for
from starcompute.orbits.constellation import load_constellation
from starcompute.times import format_utc, parse_utc

DEMO_QUESTIONS = (
    ("What is the capital of France?", "2025-11-20T00:30:00Z"),
    ("Name a planet in our solar system.", "2025-11-20T03:45:00Z"),
    ("What gas do plants absorb from the air?", "2025-11-20T06:10:00Z"),
    ("How many days are in a week?", "2025-11-20T09:20:00Z"),
)


def _add_mission(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--constellation",
        default="three-body-12",
        metavar="PRESET|FILE",
        help="constellation (default three-body-12)",
    )
    p.add_argument(
        "--stations",
        default="china",
        metavar="PRESET|FILE[,...]",
        help="ground network (default china)",
    )
    p.add_argument("--policy", default=DEFAULT_POLICY, choices=POLICIES)
    add_antennas(p)


def register(sub: Any) -> None:
    a = sub.add_parser(
        "ask",
        help="send a query to the constellation and get the answer",
        description="Uplink a query, answer it with a real model on a serving "
        "satellite (the model runs on this machine), downlink the answer; "
        "print the answer and where every second went.",
    )
    a.add_argument("prompt")
    _add_mission(a)
    a.add_argument("--from-station", metavar="NAME", help="uplink station (default: any)")
    a.add_argument("--user-lat", type=float, help="user latitude: uplink from the nearest station")
    a.add_argument("--user-lon", type=float, help="user longitude")
    a.add_argument("--at", metavar="ISO8601", help="submission time (default: now)")
    a.add_argument(
        "--model", metavar="PATH", help="checkpoint directory or .gguf (default SmolLM2)"
    )
    add_backend(a)
    add_timing_model(a)
    a.add_argument("--max-tokens", type=int, default=64, metavar="N")
    a.add_argument(
        "--holders",
        metavar="SAT[,SAT...]|none",
        help="satellites that hold the model (default: every inference satellite); "
        "others must first receive its weights over the uplink",
    )
    a.add_argument("--deadline", type=float, default=3600.0, metavar="S", help="seconds")
    a.add_argument(
        "--time-scale",
        type=float,
        metavar="X",
        help="live clock: replay the orbital waits X times faster than real time",
    )
    add_json(a)
    a.set_defaults(run=run_ask)

    d = sub.add_parser(
        "demo",
        help="the seed's experiment on the Three-Body constellation",
        description="Four real questions answered in orbit by the default "
        "model over the Three-Body constellation and China's ground network, "
        "with latency breakdowns and a verdict on the two-minute claim.",
    )
    add_backend(d)
    add_timing_model(d)
    add_json(d)
    d.set_defaults(run=run_demo)

    v = sub.add_parser(
        "availability",
        help="how often a query is answered within 120 s",
        description="Queries issued uniformly over a period: the fraction "
        "answered within 120 s and latency percentiles, with and without "
        "waiting for passes.",
    )
    _add_mission(v)
    v.add_argument("--start", required=True, metavar="ISO8601")
    v.add_argument("--hours", type=float, default=24.0, metavar="H")
    v.add_argument("--every", type=float, default=300.0, metavar="S", help="query spacing")
    v.add_argument("--from-station", metavar="NAME", help="uplink station (default: any)")
    add_timing_model(
        v,
        default=FALLBACK_CARD,
        what=f"model card that times inference on the satellites' hardware (default "
        f"{FALLBACK_CARD})",
    )
    v.add_argument("--prompt-tokens", type=int, default=40)
    v.add_argument("--output-tokens", type=int, default=128)
    add_json(v)
    v.set_defaults(run=run_availability)


def _nearest_station(stations: list[GroundStation], lat: float, lon: float) -> str:
    if not (-90 <= lat <= 90 and -180 <= lon <= 360):
        raise InputError(f"user position {lat}, {lon} is out of range (lat -90..90, lon -180..360)")

    def angle(s: GroundStation) -> float:
        p1, p2 = math.radians(lat), math.radians(s.lat_deg)
        dl = math.radians(lon - s.lon_deg)
        return math.acos(
            max(
                -1.0,
                min(1.0, math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl)),
            )
        )

    return min(stations, key=angle).name


def run_ask(args: argparse.Namespace) -> int:
    at = parse_utc(args.at) if args.at else np.datetime64("now", "ns")
    const = load_constellation(args.constellation)
    stations = load_stations(args.stations)
    station = args.from_station
    if args.user_lat is not None or args.user_lon is not None:
        if args.user_lat is None or args.user_lon is None:
            raise InputError("give both --user-lat and --user-lon")
        station = _nearest_station(stations, args.user_lat, args.user_lon)
    card = timing_card(args.timing_model, str(args.model or DEFAULT_MODEL))
    mission = Mission.build(const, stations, at, 24 * 3600.0, card, handover_s=handover_s(args))
    if args.holders is not None:
        names = [] if args.holders.strip().lower() == "none" else args.holders.split(",")
        mission.holders = frozenset(const.index(n.strip()) for n in names if n.strip())
    engine = load_engine(args.backend, args.model)
    try:
        answer = ask(
            mission, engine, args.prompt, at, station, args.policy, args.deadline, args.max_tokens
        )
    except DeadlineError as exc:
        print(f"starcompute: {exc}", file=sys.stderr)
        return 1
    if args.time_scale:
        _replay(answer, args.time_scale)
    if args.json:
        print_json(answer.to_dict())
    else:
        _print_answer(answer)
    return 0


def _replay(answer: Answer, scale: float) -> None:
    if not (np.isfinite(scale) and scale > 0):
        raise InputError(f"--time-scale must be > 0, got {scale}")
    for part, seconds in answer.trace.timings_s.items():
        if seconds > 0:
            print(f"[live x{scale:g}] {part}: {seconds:.3f} s", file=sys.stderr)
            time.sleep(seconds / scale)


def _print_answer(answer: Answer) -> None:
    t = answer.trace.to_dict()
    print(answer.text)
    print(
        f"--- {t['uplink_station']} -> {t['serving_satellite']} -> {t['downlink_station']} "
        f"({answer.trace.policy})"
    )
    print("  " + ", ".join(f"{k} {v:.3f} s" for k, v in t["timings_s"].items()))
    print(f"  submitted {t['submitted']}, delivered {t['delivered']}")


def run_availability(args: argparse.Namespace) -> int:
    const = load_constellation(args.constellation)
    stations = load_stations(args.stations)
    start = parse_utc(args.start)
    result = availability(
        lambda h: Mission.build(
            const, stations, start, h, args.timing_model, handover_s=handover_s(args)
        ),
        start,
        args.hours,
        args.every,
        args.from_station,
        args.prompt_tokens,
        args.output_tokens,
        round(float(query_bytes_for(args.prompt_tokens))),
        answer_bytes(args.output_tokens),
        progress_wanted(),
    ).summary()
    if args.json:
        print_json(result)
    else:
        w, n = result["with_waiting"], result["without_waiting"]
        print(
            f"{result['queries']} queries: {100 * result['within_limit_fraction']:.1f} % "
            f"answered within {HEADLINE_S:.0f} s"
        )
        print(f"  with waiting for passes: p50 {w['p50']} s, p95 {w['p95']} s, p99 {w['p99']} s")
        print(f"  without waiting: {100 * n['answered_fraction']:.1f} % answerable at once")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    t_wall = time.perf_counter()
    const = load_constellation("three-body-12")
    stations = load_stations("china")
    start = parse_utc("2025-11-20T00:00:00Z")
    card = timing_card(args.timing_model, DEFAULT_MODEL)
    engine = load_engine(args.backend)
    mission = Mission.build(const, stations, start, 36 * 3600.0, card)
    rows = []
    for question, at in DEMO_QUESTIONS:
        a = ask(
            mission, engine, question, parse_utc(at), None, max_tokens=48, deadline_s=24 * 3600.0
        )
        rows.append(a)
    verdicts = {}
    for network in ("china", "china,ksat,aws"):
        s = load_stations(network)
        verdicts[network] = availability(
            lambda h, s=s: Mission.build(const, s, start, h, card),
            start,
            24.0,
            900.0,
            None,
            40,
            128,
            round(float(query_bytes_for(40))),
            answer_bytes(128),
        ).summary()
    doc = {
        "answers": [r.to_dict() for r in rows],
        "availability": verdicts,
        "wall_s": round(time.perf_counter() - t_wall, 1),
    }
    if args.json:
        print_json(doc)
        return 0
    print(
        "Three-Body constellation (12 satellites), China's ground network; answers by "
        f"{engine.name} (real); in-orbit inference time predicted for {card} int8 on "
        "three-body-sat (--timing-model)"
    )
    for a in rows:
        t = a.trace.timings_s
        print(
            f"\nQ [{format_utc(a.trace.submitted)}] {a.trace.to_dict()['uplink_station']} -> "
            f"{a.trace.serving_satellite} -> {a.trace.downlink_station}"
        )
        print(f"A {a.text.strip()[:100]}")
        print(
            f"  total {a.trace.total_s:8.1f} s = wait {t['wait_for_contact']:.1f} + up "
            f"{t['uplink']:.3f} + isl {t['isl']:.3f} + queue {t['queue']:.1f} + inference "
            f"{t['inference']:.1f} + down {t['downlink']:.3f}"
        )
    c, g = verdicts["china"], verdicts["china,ksat,aws"]
    print(
        f"\nVerdict: two minutes is possible when a satellite is in view or reachable over "
        f"the laser ring: {100 * c['within_limit_fraction']:.0f} % of a day with China's "
        f"stations alone, {100 * g['within_limit_fraction']:.0f} % with KSAT and AWS added "
        f"(queries every 15 min). [{doc['wall_s']} s]"
    )
    return 0
