"""Soak test: the gateway under many concurrent clients for minutes, with faults.

One command: ``.venv/bin/python bench/soak.py [--clients 200] [--minutes 10] [--json]``
(``make soak``). It starts ``starcompute serve`` (the real SmolLM2 engine with its weights
checksum-scrubbed around every batch while upsets strike them at ``--seu-acceleration``
times the radiation model's rate, three-body-12, an orbit clock at ``--time-scale``,
orbital waits kept) on 127.0.0.1 and runs
``--clients`` clients, each asking one query after another, half of them streamed, every
query with its own ``Idempotency-Key``. Faults, every ``--fault-every-s`` wall seconds in
turn: a satellite dark for 30 orbit minutes (battery), a ground station out for 10
minutes, a satellite lost for good (at most a quarter of them), a ground or laser link
down for 10 minutes (all through ``POST /api/failures``); and ``--hangup`` of the
streamed queries are cut by their client after the first piece, then retried. A client
retries with the same key after a 429 (after Retry-After), a 5xx, an error chunk or a cut
stream, at most ``--attempts`` times for errors.

Each query ends as **delivered** (a whole answer), **failed** (an explicit error: a 4xx,
or a 5xx/429 after the last attempt or past the grace time) or **lost** (no outcome:
a timeout, a malformed response, or still pending at the end of the grace time). Also
checked: no key gets two different answers (duplicated), and the server's request log
holds exactly one completed run per delivered answer. Memory is the server's resident
set (``/proc/PID/status``), sampled every 5 s; growth is the end minus the sample after
the first 20 % of the run. Exit 1 when anything is lost or duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

KEY = "soak-key-0123456789abcdef"
PROMPTS = (
    "What is the capital of France?",
    "Name three planets.",
    "Write one sentence about the Moon.",
    "What is 12 times 7?",
    "Say hello in Spanish.",
    "Why is the sky blue?",
    "Give me a colour.",
    "What do satellites do?",
)


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    answers: dict[str, set[str]] = field(default_factory=dict)  # key -> request ids delivered
    retries: Counter[str] = field(default_factory=Counter)
    replayed: int = 0
    latencies_s: list[float] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    replanned: int = 0
    serving: list[str] = field(default_factory=list)  # satellites of streams in flight
    downlink: list[str] = field(default_factory=list)  # their downlink stations


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


async def _attempt(
    http: httpx.AsyncClient, body: dict[str, Any], key: str, hangup: bool, tally: Tally
) -> tuple[str, str, str | None, float]:
    """One send: (outcome, detail, request id, retry-after s); outcome is delivered,
    retry (a 429/5xx/error chunk/cut stream: send again) or failed/lost."""
    headers = {"Authorization": f"Bearer {KEY}", "Idempotency-Key": key}
    if not body["stream"]:
        r = await http.post("/v1/chat/completions", json=body, headers=headers)
        if r.status_code == 200:
            doc = r.json()
            ok = doc["choices"][0]["finish_reason"] in ("stop", "length")
            replay = r.headers.get("idempotent-replayed", "")
            if not ok:
                return ("failed", f"finish_reason {doc['choices'][0]['finish_reason']}", None, 0.0)
            return ("delivered", replay, doc["id"], 0.0)
        return _status(r)
    async with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
        if r.status_code != 200:
            await r.aread()
            return _status(r)
        rid, finish, done = r.headers.get("x-starcompute-request-id"), None, False
        tally.serving = [r.headers["x-starcompute-serving-satellite"], *tally.serving[:9]]
        tally.downlink = [r.headers["x-starcompute-downlink-station"], *tally.downlink[:9]]
        async for line in r.aiter_lines():
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: "):
                doc = json.loads(line[6:])
                if "error" in doc:
                    return ("retry", "error-chunk", None, 1.0)
                for choice in doc["choices"]:
                    finish = choice["finish_reason"] or finish
                    if hangup and choice["delta"].get("content"):
                        return ("retry", "hung-up", None, 0.0)
        if done and finish in ("stop", "length"):
            return ("delivered", r.headers.get("idempotent-replayed", ""), rid, 0.0)
        return ("retry", "cut-stream", None, 1.0)


def _status(r: httpx.Response) -> tuple[str, str, str | None, float]:
    if r.status_code == 429:
        return ("retry", "429", None, float(r.headers.get("retry-after", "1")))
    if r.status_code >= 500:
        return ("retry", str(r.status_code), None, 1.0)
    return ("failed", f"{r.status_code} {r.text[:80]}", None, 0.0)


async def _client(
    n: int, http: httpx.AsyncClient, args: argparse.Namespace, stop_at: float, grace_at: float,
    tally: Tally,
) -> None:  # fmt: skip
    rng = random.Random(n)
    k = 0
    while time.monotonic() < stop_at:
        k += 1
        key = f"soak-{n}-{k}"
        body = {
            "model": args.model,
            "messages": [{"role": "user", "content": rng.choice(PROMPTS)}],
            "max_tokens": rng.randint(4, args.max_tokens),
            "stream": rng.random() < 0.5,
        }
        hangup = body["stream"] and rng.random() < args.hangup
        try:  # no outcome by the grace time: lost
            outcome = await asyncio.wait_for(
                _query(http, body, key, hangup, args.attempts, rng, tally),
                grace_at - time.monotonic(),
            )
        except TimeoutError:
            outcome = "lost"
        tally.outcomes[outcome] += 1


async def _query(
    http: httpx.AsyncClient, body: dict[str, Any], key: str, hangup: bool, attempts: int,
    rng: random.Random, tally: Tally,
) -> str:  # fmt: skip
    """Send (and resend) one query until an outcome: delivered, failed or lost."""
    t0, errors = time.monotonic(), 0
    while True:
        try:
            outcome, detail, rid, wait_s = await _attempt(http, body, key, hangup, tally)
        except (httpx.TransportError, json.JSONDecodeError, KeyError) as exc:
            outcome, detail, rid, wait_s = "retry", type(exc).__name__, None, 1.0
        hangup = False  # a client hangs up once, then waits for its answer
        if outcome == "delivered" and rid is not None:
            tally.answers.setdefault(key, set()).add(rid)
            tally.replayed += detail == "true"
            tally.latencies_s.append(time.monotonic() - t0)
            return outcome
        if outcome != "retry":
            tally.failures[detail] += 1
            return outcome
        tally.retries[detail] += 1
        if detail not in ("429", "hung-up"):
            errors += 1
            if errors >= attempts:
                tally.failures[f"{detail} x{errors}"] += 1
                return "failed"
        await asyncio.sleep(wait_s * (0.5 + rng.random()))


async def _faults(
    http: httpx.AsyncClient, every_s: float, stop_at: float, tally: Tally, seed: int
) -> None:
    rng = random.Random(seed)
    sats = [s["name"] for s in (await http.get("/api/constellation")).json()["satellites"]]
    lost: list[str] = []
    turn = 0
    while time.monotonic() + every_s < stop_at:
        await asyncio.sleep(every_s)
        contacts = (await http.get("/api/contacts?minutes=30")).json()
        kinds = ["battery", "station", "lost", "link"]
        kind = kinds[turn % len(kinds)]
        turn += 1
        if kind == "lost" and len(lost) >= len(sats) // 4:
            kind = "battery"
        body = _fault(kind, rng, tally, contacts, [s for s in sats if s not in lost])
        if body["cause"] == "lost":
            lost.append(body["target"])
        r = await http.post("/api/failures", json=body, headers={"Authorization": f"Bearer {KEY}"})
        if r.status_code == 200:
            tally.replanned += len(r.json()["replanned"])
            tally.faults.append(r.json()["outage"])
        else:
            print(f"fault {body} refused: {r.status_code} {r.text}", file=sys.stderr)


def _fault(
    kind: str, rng: random.Random, tally: Tally, contacts: dict[str, Any], alive: list[str]
) -> dict[str, Any]:
    """A failure aimed at what queries in flight use (their serving satellite, downlink
    station, or an open link of one of them), else at a random one."""
    serving = [s for s in tally.serving if s in alive] or alive
    if kind == "station":
        stations = tally.downlink or [g["station"] for g in contacts["ground"]]
        if stations:
            return {"kind": "station", "target": rng.choice(stations), "minutes": 10,
                    "cause": "outage"}  # fmt: skip
    if kind == "link":
        links = [(g["station"], g["satellite"]) for g in contacts["ground"] if g["open"]]
        links += [(i["a"], i["b"]) for i in contacts["isl"] if i["open"]]
        near = [p for p in links if set(p) & set(serving)] or links
        if near:
            pair = rng.choice(near)
            return {"kind": "link", "target": "~".join(pair), "minutes": 10, "cause": "outage"}
    if kind == "lost":
        return {"kind": "satellite", "target": rng.choice(serving), "cause": "lost"}
    return {"kind": "satellite", "target": rng.choice(serving), "minutes": 30, "cause": "battery"}


async def _memory(pid: int, stop: asyncio.Event, samples: list[tuple[float, float]]) -> None:
    t0 = time.monotonic()
    while not stop.is_set():
        samples.append((time.monotonic() - t0, _rss_mb(pid)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 5.0)
    samples.append((time.monotonic() - t0, _rss_mb(pid)))


async def _soak(url: str, pid: int, args: argparse.Namespace) -> tuple[Tally, list[Any], float]:
    tally = Tally()
    limits = httpx.Limits(max_connections=args.clients + 20, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout_s, limits=limits) as http:
        t0 = time.monotonic()
        stop_at = t0 + args.minutes * 60.0
        grace_at = stop_at + args.grace_s
        stop, samples = asyncio.Event(), []
        memory = asyncio.create_task(_memory(pid, stop, samples))
        faults = asyncio.create_task(_faults(http, args.fault_every_s, stop_at, tally, args.seed))
        clients = [_client(n, http, args, stop_at, grace_at, tally) for n in range(args.clients)]
        await asyncio.gather(*clients)
        faults.cancel()
        stop.set()
        await memory
        return tally, samples, time.monotonic() - t0


def _serve(args: argparse.Namespace, tmp: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = _free_port()
    (tmp / "keys").write_text(f"soak:{KEY}\n")
    log_db = tmp / "requests.sqlite"
    exe = Path(sys.executable).with_name("starcompute")
    cmd = [
        str(exe), "serve", "--port", str(port), "--constellation", "three-body-12",
        "--time-scale", str(args.time_scale), "--queue", str(args.queue),
        "--max-batch", str(args.max_batch), "--api-key-file", str(tmp / "keys"),
        "--log-db", str(log_db), "--model-id", "smollm2", "--start", args.start,
        "--seu-acceleration", str(args.seu_acceleration), "--seu-protect",
    ]  # fmt: skip
    with (tmp / "serve.err").open("wb") as err:  # a file: a full pipe would stall it
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            err = (tmp / "serve.err").read_text(errors="replace")
            raise SystemExit(f"starcompute serve exited: {err[-2000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return server, url, log_db
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    server.kill()
    raise SystemExit("starcompute serve did not start in 180 s")


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server, url, log_db = _serve(args, Path(tmp))
        try:
            tally, samples, wall_s = asyncio.run(_soak(url, server.pid, args))
            health = httpx.get(url + "/healthz", timeout=10).json()
        finally:
            server.terminate()
            server.wait(timeout=60)
        with sqlite3.connect(log_db) as db:
            statuses = dict(db.execute("SELECT status, COUNT(*) FROM requests GROUP BY status"))
            errors = dict(
                db.execute(
                    "SELECT substr(error, 1, 70), COUNT(*) FROM requests "
                    "WHERE status = 'failed' GROUP BY 1"
                )
            )
    delivered_ids = set().union(*tally.answers.values()) if tally.answers else set()
    duplicated = sum(len(ids) > 1 for ids in tally.answers.values())
    warm = samples[max(0, len(samples) // 5)][1]
    lat = sorted(tally.latencies_s) or [float("nan")]
    return {
        "clients": args.clients,
        "minutes": args.minutes,
        "wall_s": round(wall_s, 1),
        "queries": sum(tally.outcomes.values()),
        "delivered": tally.outcomes["delivered"],
        "failed": tally.outcomes["failed"],
        "lost": tally.outcomes["lost"],
        "duplicated": duplicated,
        "failed_by_reason": dict(tally.failures),
        "retries_by_reason": dict(tally.retries),
        "replayed_answers": tally.replayed,
        "faults_injected": len(tally.faults),
        "faults_by_cause": dict(Counter(f["cause"] + ":" + f["kind"] for f in tally.faults)),
        "requests_replanned": tally.replanned,
        "server_runs": statuses,
        "server_errors": errors,
        "server_completed_minus_delivered": statuses.get("completed", 0) - len(delivered_ids),
        "server_in_flight_at_end": health["in_flight"],
        "radiation": health.get("radiation"),
        "latency_p50_s": round(lat[len(lat) // 2], 2),
        "latency_p95_s": round(lat[int(len(lat) * 0.95)], 2),
        "rss_start_mb": round(samples[0][1], 1),
        "rss_warm_mb": round(warm, 1),
        "rss_end_mb": round(samples[-1][1], 1),
        "rss_max_mb": round(max(s[1] for s in samples), 1),
        "rss_growth_mb": round(samples[-1][1] - warm, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clients", type=int, default=200, help="concurrent clients (200)")
    p.add_argument("--minutes", type=float, default=10.0, help="wall minutes of traffic (10)")
    p.add_argument("--fault-every-s", type=float, default=30.0, help="wall s between faults")
    p.add_argument("--hangup", type=float, default=0.05, help="streams cut by their client")
    p.add_argument("--attempts", type=int, default=5, help="sends per query on errors (5)")
    p.add_argument("--max-tokens", type=int, default=16, help="largest max_tokens asked (16)")
    p.add_argument("--time-scale", type=float, default=5.0, help="orbit clock speed (5)")
    p.add_argument(
        "--seu-acceleration", type=float, default=5.0, help="weight upsets x model rate (5)"
    )
    p.add_argument("--queue", type=int, default=64, help="server's requests in flight (64)")
    p.add_argument("--max-batch", type=int, default=16, help="server's engine batch (16)")
    p.add_argument("--start", default="2025-11-20T00:00:00Z", help="orbit time at start")
    p.add_argument("--timeout-s", type=float, default=300.0, help="client read timeout")
    p.add_argument("--grace-s", type=float, default=180.0, help="time to finish after the run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(model="smollm2")  # the --model-id it serves
    args = p.parse_args()
    if args.clients < 1 or not args.minutes > 0 or args.attempts < 1 or args.max_tokens < 4:
        p.error("--clients >= 1, --minutes > 0, --attempts >= 1 and --max-tokens >= 4")
    doc = run(args)
    print(
        json.dumps(doc, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in doc.items())
    )
    if doc["lost"] or doc["duplicated"] or doc["server_completed_minus_delivered"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
