"""The testbed's own processes besides the nodes: the link emulator and the ground
segment (mission control, the stations and, with ``--serve``, the OpenAI gateway).
Each runs until SIGTERM or SIGINT and writes ``ready.json`` once it listens."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starcompute.dtn.links import EmulatedLinks
from starcompute.errors import InputError
from starcompute.links.contact_plan import ContactPlan
from starcompute.node.config import parse_address
from starcompute.node.process import STOP_TIMEOUT_S, stopping
from starcompute.testbed.config import PLAN, Testbed

READY = "ready.json"


def _world(tb: Testbed) -> tuple[Any, Any, ContactPlan]:
    from starcompute.ground.stations import load_stations
    from starcompute.orbits.constellation import load_constellation

    plan = ContactPlan.read_json(tb.run / PLAN)
    return load_constellation(tb.constellation), load_stations(tb.stations), plan


def _ready(folder: Path, **info: Any) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"pid": os.getpid(), "started_unix_s": time.time(), **info}
    (folder / READY).write_text(json.dumps(doc), encoding="utf-8")


async def _until_stopped(
    start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]
) -> None:
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stopping(done))
    try:
        await start()
        await done.wait()
    finally:
        try:
            await asyncio.wait_for(stop(), STOP_TIMEOUT_S)
        except TimeoutError:
            print(f"did not stop in {STOP_TIMEOUT_S:g} s; exiting", file=sys.stderr, flush=True)


def run_emulator(run: Path) -> int:
    """The link emulator of a run: the orbit clock, the contact plan, every link."""
    from starcompute.orbits.propagate import propagate
    from starcompute.routing.network import Network
    from starcompute.routing.query import geometric_range_fn
    from starcompute.testbed.emulator import LinkEmulator
    from starcompute.times import time_grid

    tb = Testbed.load(run)
    const, stations, plan = _world(tb)
    eph = propagate(const, time_grid(plan.start, -(-plan.duration_s // 60) * 60, 60.0))
    addresses = {n: parse_address(a, n) for n, a in tb.endpoints.items()}
    clock = tb.clock
    emulator = LinkEmulator(
        plan, addresses, clock, geometric_range_fn(Network(const, stations), eph)
    )
    host, port = parse_address(tb.emulator, "emulator")

    async def start() -> None:
        try:
            await emulator.start(host, port)
        except OSError as exc:
            raise InputError(
                f"link emulator: cannot listen on {host}:{port}: {exc.strerror}"
            ) from None
        _ready(run / "emulator", address=tb.emulator)
        print(f"link emulator ready on {tb.emulator}", file=sys.stderr, flush=True)

    asyncio.run(_until_stopped(start, emulator.stop))
    return 0


def run_ground(run: Path, serve: bool) -> int:
    """Mission control and the stations of a run (and the gateway with ``serve``)."""
    from starcompute.compute.checkpoints import DEFAULT_MODEL
    from starcompute.compute.real import PromptTokens
    from starcompute.mission.control import Mission
    from starcompute.mission.live import GroundSegment
    from starcompute.mission.requestlog import RequestLog
    from starcompute.testbed.ground import BundleLink, Stations
    from starcompute.testbed.provision import ground_dir, load_ground_keys, save_ground_keys

    tb = Testbed.load(run)
    const, stations, plan = _world(tb)
    const.roles = [
        r if n in tb.satellites else "relay" for n, r in zip(const.names, const.roles, strict=True)
    ]
    clock = tb.clock
    mission = Mission.build(const, stations, plan.start, plan.duration_s, tb.timing_card, plan=plan)
    folder = ground_dir(tb)
    links = EmulatedLinks(*parse_address(tb.emulator, "emulator"))
    ground = Stations(
        plan,
        clock,
        links,
        folder / "stations",
        load_ground_keys(tb),
        lambda keys: save_ground_keys(tb, keys),
    )
    model_id = Path(tb.model).stem if tb.model else DEFAULT_MODEL
    checkpoint = next((tb.node_dir(s) / "model" for s in tb.satellites), None)
    tokens = PromptTokens(checkpoint) if checkpoint is not None else None
    segment = GroundSegment(
        mission,
        BundleLink(ground, lambda: (run / "ready.json").is_file()),
        clock,
        RequestLog(folder / "requests.sqlite"),
        replan=None,
        model=model_id,
        tokens=tokens,
        silence_s=tb.silence_s,
    )
    addresses = {n: parse_address(tb.endpoints[n], n) for n in plan.stations}
    server: Any = None

    async def start() -> None:
        nonlocal server
        await ground.start(addresses)
        if serve:
            server = await _gateway(tb, segment, model_id, stations)
        _ready(folder, gateway=tb.gateway if serve else None)
        print(
            "ground segment ready" + (f": gateway on http://{tb.gateway}" if serve else ""),
            file=sys.stderr,
            flush=True,
        )

    async def stop() -> None:
        if server is not None:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.task, 10)
        await ground.stop()
        segment.close()

    asyncio.run(_until_stopped(start, stop))
    return 0


async def _gateway(tb: Testbed, segment: Any, model_id: str, stations: Any) -> Any:
    """The OpenAI gateway on the ground segment, in this process's event loop."""
    import uvicorn

    from starcompute.gateway.app import SHUTDOWN_GRACE_S, create_app
    from starcompute.gateway.idempotency import Idempotency
    from starcompute.links.czml import czml_document
    from starcompute.testbed.provision import ground_dir

    app = create_app(
        segment,
        model_id,
        czml=lambda m: czml_document(m.const, stations, m.plan, m.eph, tb.time_scale),
        idempotency=Idempotency(path=ground_dir(tb) / "requests.sqlite"),  # survives a crash
    )
    host, port = parse_address(tb.gateway, "gateway")
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=SHUTDOWN_GRACE_S
    )
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    server.task = asyncio.create_task(server.serve())  # type: ignore[attr-defined]
    while not server.started:
        if server.task.done():  # type: ignore[attr-defined]
            raise InputError(f"gateway: cannot listen on {tb.gateway}")
        await asyncio.sleep(0.05)
    return server
