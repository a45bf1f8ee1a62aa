"""Chaos on the testbed: clients keep asking while its processes are killed and restarted.

One command: ``.venv/bin/python bench/chaos.py [--clients 100] [--minutes 10]
[--kill-every-s 20] [--json]`` (``make chaos``). It provisions and starts a testbed in
this process (``testbed.launcher``: one node process per chosen satellite running
SmolLM2, the relays, the link emulator, and the ground segment with the OpenAI gateway,
all on 127.0.0.1), then runs ``--clients`` clients, each asking one query after another
(half streamed, every query with its own ``Idempotency-Key``, retried with that key after
a 429, a 5xx, a refused connection or a cut stream). Meanwhile a driver SIGKILLs a random
process of the testbed (a node, the relays, the emulator, or the ground segment and its
gateway: each kind in turn, in a random order every round), on average every
``--kill-every-s`` wall seconds (exponential gaps), and starts it again ``--down-s``
later from its data directory, as a supervisor would.

Each query ends as **delivered** (a whole answer), **failed** (an explicit error reached
the client: a 4xx, or errors on every one of its ``--attempts`` sends; by default a
client retries until the grace time, as a gateway that is down only refuses
connections) or **lost** (no outcome by the end of the grace time). **duplicated**:
keys for which a client received two different answers. Memory: the resident set of
every process, sampled every 5 s; growth is per process over its last life (from its
first sample at least 30 s after it started to the end). Exit 1 when anything is lost or
duplicated, or requests != delivered + failed.

Orbit time runs ``--time-scale`` times faster than the wall clock; queries wait for
their contacts as everywhere in the testbed, so grace time must cover the longest gap.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from soak import Tally, _client, _free_port, _rss_mb
from starcompute.testbed.launcher import Child, Launcher, Options, prepare

NODES = ("TB500-P00-S00", "TB500-P00-S04", "TB500-P00-S08")
WARM_S = 30.0


def _launch(args: argparse.Namespace, run: Path, port: int) -> Launcher:
    opts = Options(
        constellation="three-body-12",
        stations=args.stations,
        start=args.start,
        hours=args.hours,
        time_scale=args.time_scale,
        satellites=list(NODES[: args.nodes]),
        serve=True,
        host="127.0.0.1",
        port=port,
        run=run,
        silence_s=86400.0,
    )
    launcher = Launcher(prepare(opts), serve=True)
    launcher.start()
    return launcher


def _alive(child: Child) -> bool:
    return child.proc is not None and child.proc.poll() is None


async def _ready(child: Child, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(p.is_file() for p in child.ready) or not _alive(child):
            return _alive(child)
        await asyncio.sleep(0.2)
    return False


async def _chaos(
    launcher: Launcher, args: argparse.Namespace, stop_at: float, kills: list[dict[str, Any]]
) -> None:
    """Kill a random child (SIGKILL), wait ``down_s``, start it again; repeat."""
    rng = random.Random(args.seed)
    roles: list[str] = []
    while True:
        await asyncio.sleep(rng.expovariate(1.0 / args.kill_every_s))
        if time.monotonic() >= stop_at:
            return
        if not roles:  # every kind of process in turn, in a random order each round
            roles = sorted({c.role for c in launcher.children})
            rng.shuffle(roles)
        role = roles.pop()
        child = rng.choice([c for c in launcher.children if c.role == role and _alive(c)])
        assert child.proc is not None and child.proc.pid is not None
        t0 = time.monotonic()
        os.kill(child.proc.pid, signal.SIGKILL)
        while child.proc.poll() is None:
            await asyncio.sleep(0.05)
        await asyncio.sleep(args.down_s)
        launcher.restart(child.name)
        up = await _ready(child, 120.0)
        kills.append({"role": child.role, "name": child.name, "up": up,
                      "restart_s": round(time.monotonic() - t0, 1)})  # fmt: skip
        if not up:
            raise SystemExit(f"{child.role} {child.name} did not come back")


async def _memory(
    launcher: Launcher, stop: asyncio.Event, rss: dict[str, list[tuple[float, int, float]]]
) -> None:
    """Every 5 s: (time, pid, MB) for each live child, by name."""
    while not stop.is_set():
        for c in launcher.children:
            if _alive(c) and c.proc is not None and c.proc.pid is not None:
                with contextlib.suppress(OSError, ValueError):
                    rss.setdefault(c.name, []).append(
                        (time.monotonic(), c.proc.pid, _rss_mb(c.proc.pid))
                    )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 5.0)


def _growth(samples: list[tuple[float, int, float]]) -> dict[str, Any]:
    """RSS over the process's last life: from WARM_S after it started to the end."""
    pid = samples[-1][1]
    life = [s for s in samples if s[1] == pid]
    warm = [s for s in life if s[0] - life[0][0] >= WARM_S] or life[-1:]
    return {
        "lives": len({s[1] for s in samples}),
        "rss_warm_mb": round(warm[0][2], 1),
        "rss_end_mb": round(life[-1][2], 1),
        "rss_growth_mb": round(life[-1][2] - warm[0][2], 1),
        "over_s": round(life[-1][0] - warm[0][0], 1),
    }


async def _run(launcher: Launcher, url: str, args: argparse.Namespace) -> dict[str, Any]:
    tally, kills = Tally(), []
    rss: dict[str, list[tuple[float, int, float]]] = {}
    limits = httpx.Limits(max_connections=args.clients + 20, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout_s, limits=limits) as http:
        args.model = (await http.get("/v1/models")).json()["data"][0]["id"]
        t0 = time.monotonic()
        stop_at = t0 + args.minutes * 60.0
        grace_at = stop_at + args.grace_s
        stop = asyncio.Event()
        memory = asyncio.create_task(_memory(launcher, stop, rss))
        chaos = asyncio.create_task(_chaos(launcher, args, stop_at, kills))
        clients = [_client(n, http, args, stop_at, grace_at, tally) for n in range(args.clients)]
        await asyncio.gather(*clients)
        chaos.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await chaos
        stop.set()
        await memory
        wall_s = time.monotonic() - t0
    duplicated = sum(len(ids) > 1 for ids in tally.answers.values())
    lat = sorted(tally.latencies_s) or [float("nan")]
    requests = sum(tally.outcomes.values())
    return {
        "clients": args.clients,
        "minutes": args.minutes,
        "kill_every_s": args.kill_every_s,
        "wall_s": round(wall_s, 1),
        "requests": requests,
        "delivered": tally.outcomes["delivered"],
        "failed": tally.outcomes["failed"],
        "lost": tally.outcomes["lost"],
        "duplicated": duplicated,
        "accounted": requests == tally.outcomes["delivered"] + tally.outcomes["failed"],
        "failed_by_reason": dict(tally.failures),
        "retries_by_reason": dict(tally.retries),
        "replayed_answers": tally.replayed,
        "kills": len(kills),
        "kills_by_role": dict(Counter(k["role"] for k in kills)),
        "restart_s_max": max((k["restart_s"] for k in kills), default=None),
        "latency_p50_s": round(lat[len(lat) // 2], 2),
        "latency_p95_s": round(lat[int(len(lat) * 0.95)], 2),
        "rss": {name: _growth(s) for name, s in sorted(rss.items())},
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="starcompute-chaos-") as tmp:
        port = _free_port()
        launcher = _launch(args, Path(tmp) / "run", port)
        try:
            return asyncio.run(_run(launcher, f"http://127.0.0.1:{port}", args))
        finally:
            launcher.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clients", type=int, default=100, help="concurrent clients (100)")
    p.add_argument("--minutes", type=float, default=10.0, help="wall minutes of traffic (10)")
    p.add_argument("--kill-every-s", type=float, default=20.0, help="mean wall s between kills")
    p.add_argument("--down-s", type=float, default=1.0, help="wall s a killed process stays down")
    p.add_argument("--nodes", type=int, default=3, help="node processes with an engine (1-3)")
    p.add_argument("--hangup", type=float, default=0.05, help="streams cut by their client")
    p.add_argument(
        "--attempts", type=int, default=1000, help="sends per query on errors (1000: until grace)"
    )
    p.add_argument("--max-tokens", type=int, default=12, help="largest max_tokens asked (12)")
    p.add_argument("--stations", default="china,ksat,aws", help="ground stations")
    p.add_argument("--start", default="2025-11-20T00:00:00Z", help="orbit time at start")
    p.add_argument("--hours", type=float, default=24.0, help="contact plan length (orbit h)")
    p.add_argument("--time-scale", type=float, default=20.0, help="orbit clock speed (20)")
    p.add_argument("--timeout-s", type=float, default=300.0, help="client read timeout")
    p.add_argument("--grace-s", type=float, default=240.0, help="time to finish after the run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    ok = (
        args.clients >= 1 and args.minutes > 0 and args.kill_every_s > 0 and args.down_s >= 0
        and 1 <= args.nodes <= len(NODES) and args.attempts >= 1 and args.max_tokens >= 4
    )  # fmt: skip
    if not ok:
        p.error(
            "--clients >= 1, --minutes > 0, --kill-every-s > 0, --down-s >= 0, "
            f"--nodes 1..{len(NODES)}, --attempts >= 1, --max-tokens >= 4"
        )
    doc = run(args)
    print(
        json.dumps(doc, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in doc.items())
    )
    if doc["lost"] or doc["duplicated"] or not doc["accounted"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
