"""Running nodes as an OS process: load each data directory, start, serve until SIGTERM.

One process usually runs one satellite's node; plain relays (no engine) may share one
process, each with its own data directory, store and port.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starcompute.dtn.store import BundleStore
from starcompute.errors import InputError
from starcompute.links.contact_plan import ContactPlan
from starcompute.node.config import DB, KEYS, MODEL, PLAN, NodeConfig
from starcompute.node.runtime import Node
from starcompute.node.state import Onboard
from starcompute.security.telecommand import SatelliteKeys

READY = "ready.json"
STOP_TIMEOUT_S = 10.0


def stopping(stop: asyncio.Event) -> None:
    """SIGTERM or SIGINT: stop cleanly; a second one: exit now."""
    if stop.is_set():
        os._exit(1)
    stop.set()


@dataclass(slots=True)
class Loaded:
    data: Path
    config: NodeConfig
    plan: ContactPlan
    keys: SatelliteKeys


def load(data: Path, **overrides: Any) -> Loaded:
    """A node's data directory, checked (InputError naming what is missing)."""
    config = NodeConfig.load(data).override(**overrides)
    for name in (PLAN, KEYS):
        if not (data / name).is_file():
            raise InputError(f"node {config.name}: {data / name} is missing")
    plan = ContactPlan.read_json(data / PLAN)
    if config.name not in plan.satellites:
        raise InputError(f"node {config.name}: not a satellite of its contact plan {data / PLAN}")
    try:
        keys = SatelliteKeys.from_dict(json.loads((data / KEYS).read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"node {config.name}: {data / KEYS} is not a key file ({exc})") from None
    if config.role != "relay" and not (data / MODEL / "config.json").is_file():
        raise InputError(
            f"node {config.name}: no model in {data / MODEL} (config.json is missing); "
            "provision it with `starcompute testbed` or give a relay role"
        )
    return Loaded(data, config, plan, keys)


def _engine(loaded: Loaded, model: Path) -> Any:
    """The node's engine on the model in ``model`` (its own, or one uploaded later)."""
    from starcompute.compute.backends import load_engine

    cfg = loaded.config
    options = {"max_batch": cfg.max_batch} if cfg.backend == "transformers" else {}
    engine = load_engine(cfg.backend, model, threads=cfg.threads, **options)
    if not cfg.seu_protect:
        return engine
    from starcompute.security.seu import ProtectedEngine

    return ProtectedEngine.of(engine, dual=cfg.dual)


def _onboard(loaded: Loaded, engine: Any) -> Onboard:
    from starcompute.orbits.constellation import load_constellation
    from starcompute.spacecraft.hardware import load_hardware

    const = load_constellation(loaded.config.constellation)
    i = const.index(loaded.config.name)
    bits = 0
    if engine is not None:
        weights = engine.weights()
        if weights is not None:
            bits = 8 * sum(p.numel() * p.element_size() for p in weights.parameters())
        else:  # not exposed (llama.cpp): the files it loaded
            bits = 8 * sum(f.stat().st_size for f in (loaded.data / MODEL).glob("*.gguf"))
    plan = loaded.plan
    return Onboard.of(
        const.select([i]), load_hardware(const.hardware[i]), plan.start, plan.duration_s, bits
    )


def build(loaded: Loaded) -> Node:
    engine = None if loaded.config.role == "relay" else _engine(loaded, loaded.data / MODEL)
    store = BundleStore(loaded.data / DB)
    onboard = _onboard(loaded, engine)
    clock = loaded.config.clock(loaded.data)
    return Node(
        loaded.config, loaded.plan, store, loaded.keys, engine, onboard, clock=clock,
        data=loaded.data, loader=lambda model: _engine(loaded, model),
    )  # fmt: skip


async def serve(nodes: list[Node], datas: list[Path]) -> None:
    """Start every node, write each one's ready file, run until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stopping(stop))
    loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)  # diagnosis: what each task awaits
    try:
        for node, data in zip(nodes, datas, strict=True):
            try:
                port = await node.start()
            except OSError as exc:
                raise InputError(
                    f"node {node.config.name}: cannot listen on "
                    f"{node.config.listen}: {exc.strerror}"
                ) from None
            ready = {
                "pid": os.getpid(),
                "name": node.config.name,
                "port": port,
                "started_unix_s": time.time(),
            }
            (data / READY).write_text(json.dumps(ready), encoding="utf-8")
        print(f"node ready: {', '.join(n.config.name for n in nodes)}", file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        for node in nodes:
            try:
                await asyncio.wait_for(node.stop(), STOP_TIMEOUT_S)
            except TimeoutError:
                print(f"node {node.config.name}: did not stop in {STOP_TIMEOUT_S:g} s; exiting",
                      file=sys.stderr, flush=True)  # fmt: skip
            node.store.close()


def _dump_tasks() -> None:
    """Write every asyncio task's stack to stderr (the node's log)."""
    import io

    for task in asyncio.all_tasks():
        out = io.StringIO()
        task.print_stack(limit=12, file=out)
        print(f"task {task.get_name()}: {out.getvalue()}", file=sys.stderr, flush=True)


def run_nodes(datas: list[Path], **overrides: Any) -> int:
    """Load, check and run the nodes of these data directories in this process."""
    loaded = [load(d, **overrides) for d in datas]
    for d in datas:
        (d / READY).unlink(missing_ok=True)
    nodes = [build(x) for x in loaded]
    asyncio.run(serve(nodes, datas))
    return 0
