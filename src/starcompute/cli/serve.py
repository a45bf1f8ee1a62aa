"""``starcompute serve``: the OpenAI-compatible gateway and the dashboard;
``starcompute export czml``: the scenario as CZML for Cesium."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from starcompute.cli.common import add_antennas, add_backend, add_timing_model, handover_s
from starcompute.compute.engine import BATCHING
from starcompute.errors import InputError
from starcompute.times import parse_utc


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="OpenAI-compatible API into the constellation, and a live 3-D dashboard",
        description="Serve POST /v1/chat/completions (and streaming), GET /v1/models, the "
        "dashboard at /, /api/* and /metrics. Each request goes through mission control "
        "on a live orbit clock and is answered by the real engine.",
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    _add_world(p)
    p.add_argument(
        "--model", metavar="PATH", help="checkpoint directory or .gguf (default SmolLM2)"
    )
    p.add_argument("--model-id", metavar="ID", help="model name clients use (default: the model's)")
    p.add_argument("--time-scale", type=float, default=1.0, metavar="X", help="orbit clock speed")
    p.add_argument(
        "--no-wait",
        action="store_true",
        help="answer as soon as the model is done (orbital waits reported, not waited)",
    )
    p.add_argument("--api-key-file", type=Path, metavar="FILE", help="one key (or id:key) a line")
    p.add_argument("--queue", type=int, default=64, metavar="N", help="requests in flight (64)")
    add_antennas(p)
    p.add_argument(
        "--max-batch",
        type=int,
        default=64,
        metavar="N",
        help="requests the engine runs at once (64; continuous batching: each joins at the "
        "next decode step)",
    )
    p.add_argument(
        "--batching",
        choices=BATCHING,
        default="continuous",
        help="continuous (a request joins the running batch at the next decode step; the "
        "default) or static (a batch runs to its longest member)",
    )
    add_backend(p)
    add_timing_model(p)
    p.add_argument("--max-tokens", type=int, default=128, metavar="N", help="default max tokens")
    p.add_argument(
        "--max-tokens-limit", type=int, default=1024, metavar="N", help="largest max_tokens"
    )
    p.add_argument("--log-db", type=Path, metavar="FILE", help="SQLite request log")
    p.add_argument(
        "--seu-protect",
        action="store_true",
        help="checksum-scrub the weights around every batch; re-run a batch an upset struck",
    )
    p.add_argument(
        "--dual",
        action="store_true",
        help="with --seu-protect: run every batch twice and release it only if both agree "
        "(catches upsets in activations; sampled requests get a seed so both runs match)",
    )
    p.add_argument(
        "--seu-acceleration",
        type=float,
        default=0.0,
        metavar="X",
        help="inject weight upsets at X times the radiation model's rate (implies "
        "--seu-protect; 0: none)",
    )
    p.set_defaults(run=run_serve)

    e = sub.add_parser("export", help="export a scenario for other tools")
    cmds = e.add_subparsers(dest="what", metavar="FORMAT", required=True)
    c = cmds.add_parser(
        "czml",
        help="constellation, stations, links and eclipses as CZML (Cesium)",
        description="Write satellites (sampled positions, coloured by sunlight), ground "
        "stations, ground and laser links over a span as a CZML document.",
    )
    _add_world(c)
    c.add_argument("--step", type=float, default=60.0, metavar="S", help="position sampling")
    c.add_argument("--out", type=Path, required=True, metavar="FILE.czml")
    c.set_defaults(run=run_czml)


def _add_world(p: argparse.ArgumentParser) -> None:
    p.add_argument("--constellation", default="three-body-12", metavar="PRESET|FILE")
    p.add_argument("--stations", default="china,ksat,aws", metavar="PRESET|FILE[,...]")
    p.add_argument("--start", metavar="ISO8601", help="orbit time at start (default: now)")
    p.add_argument("--hours", type=float, default=6.0, metavar="H", help="span planned (6)")


def _world(args: argparse.Namespace) -> tuple[Any, Any, np.datetime64, float]:
    from starcompute.ground.stations import load_stations
    from starcompute.orbits.constellation import load_constellation

    start = parse_utc(args.start) if args.start else np.datetime64("now", "s")
    if not (np.isfinite(args.hours) and 0 < args.hours <= 72):
        raise InputError(f"--hours must be within 0..72, got {args.hours}")
    return (
        load_constellation(args.constellation),
        load_stations(args.stations),
        start,
        args.hours * 3600.0,
    )


def read_api_keys(path: Path) -> dict[str, str]:
    """key -> key id, from lines ``key`` or ``id:key`` (``#`` comments)."""
    if not path.is_file():
        raise InputError(f"--api-key-file {path}: no such file")
    keys: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key_id, _, key = line.rpartition(":")
        key_id = key_id or f"key{n}"
        if len(key) < 16:
            raise InputError(f"--api-key-file {path} line {n}: a key must have >= 16 characters")
        keys[key] = key_id
    if not keys:
        raise InputError(f"--api-key-file {path}: no keys in the file")
    return keys


def run_serve(args: argparse.Namespace) -> int:
    if not 1 <= args.port <= 65535:
        raise InputError(f"--port must be within 1..65535, got {args.port}")
    if not (np.isfinite(args.time_scale) and args.time_scale > 0):
        raise InputError(
            f"--time-scale must be > 0 (orbit seconds per wall second), got {args.time_scale}"
        )
    if args.hours < 2:
        raise InputError(
            f"--hours must be >= 2 for serve (the plan rolls forward), got {args.hours}"
        )
    for name in ("queue", "max_batch", "max_tokens", "max_tokens_limit"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be >= 1")
    if not (np.isfinite(args.seu_acceleration) and args.seu_acceleration >= 0):
        raise InputError(f"--seu-acceleration must be >= 0, got {args.seu_acceleration}")
    if args.dual and not (args.seu_protect or args.seu_acceleration > 0):
        raise InputError("--dual needs --seu-protect (it protects the weights' batches)")
    keys = read_api_keys(args.api_key_file) if args.api_key_file else None
    const, stations, start, horizon = _world(args)
    import uvicorn

    from starcompute.compute.backends import load_engine
    from starcompute.compute.cards import timing_card
    from starcompute.compute.checkpoints import DEFAULT_MODEL, cache_dir
    from starcompute.gateway.app import SHUTDOWN_GRACE_S, create_app
    from starcompute.gateway.idempotency import Idempotency
    from starcompute.links.czml import czml_document
    from starcompute.mission.control import Mission
    from starcompute.mission.requestlog import RequestLog
    from starcompute.mission.twin import twin_segment
    from starcompute.times import OrbitClock

    log_path = args.log_db or cache_dir() / "requests.sqlite"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"planning {const.name} with {len(stations)} stations over {args.hours:g} h ...",
        file=sys.stderr,
    )
    card = timing_card(args.timing_model, str(args.model or DEFAULT_MODEL))
    handover = handover_s(args)
    mission = Mission.build(const, stations, start, horizon, card, handover_s=handover)
    options = {"max_batch": args.max_batch} if args.backend == "transformers" else {}
    engine: Any = load_engine(args.backend, args.model, **options)
    if args.seu_protect or args.seu_acceleration > 0:
        from starcompute.security.seu import ProtectedEngine

        engine = ProtectedEngine.of(engine, dual=args.dual)
    clock = OrbitClock(start, args.time_scale, wait=not args.no_wait)
    model_id = args.model_id or Path(engine.name).stem
    segment = twin_segment(
        mission,
        engine,
        clock,
        RequestLog(log_path),
        args.queue,
        max_batch=args.max_batch,
        replan=lambda t: Mission.build(const, stations, t, horizon, card, handover_s=handover),
        model=model_id,
        continuous=args.batching == "continuous",
    )
    _radiation(args, engine, segment, clock)
    app = create_app(
        segment,
        model_id,
        keys,
        args.max_tokens,
        args.max_tokens_limit,
        czml=lambda m: czml_document(m.const, stations, m.plan, m.eph, args.time_scale),
        idempotency=Idempotency(path=log_path),  # keys survive a restart, beside the log
    )
    print(f"serving {model_id} on http://{args.host}:{args.port} (dashboard at /)", file=sys.stderr)
    try:
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_level="warning",
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        )
    finally:
        segment.close()
    return 0


def _radiation(args: argparse.Namespace, engine: Any, segment: Any, clock: Any) -> None:
    """Upsets at the radiation model's rate for the satellites' positions now, times
    ``--seu-acceleration``, striking the protected engine's weights while it runs."""
    from starcompute.security.seu import Exposure, SeuInjector

    if args.seu_acceleration > 0:
        injector = SeuInjector(engine.guard, acceleration=args.seu_acceleration)
        engine.during_batch = Exposure(injector, segment.seu_rate_per_bit_per_day, clock.elapsed_s)


def run_czml(args: argparse.Namespace) -> int:
    import json

    from starcompute.links.config import IslConfig
    from starcompute.links.contacts import contact_plan
    from starcompute.links.czml import czml_document
    from starcompute.orbits.propagate import propagate
    from starcompute.times import time_grid

    const, stations, start, horizon = _world(args)
    if not (np.isfinite(args.step) and 1 <= args.step <= 600):
        raise InputError(f"--step must be within 1..600 s, got {args.step}")
    plan = contact_plan(const, stations, start, horizon, isl=IslConfig.default())
    eph = propagate(const, time_grid(start, horizon, args.step))
    doc = czml_document(const, stations, plan, eph)
    try:
        args.out.write_text(json.dumps(doc), encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write {args.out}: {exc.strerror}") from None
    n_sat, n_st = len(const), len(stations)
    print(f"wrote {args.out}: {len(doc) - 1} packets ({n_sat} satellites, {n_st} stations)")
    return 0
