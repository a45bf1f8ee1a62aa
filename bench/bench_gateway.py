"""Benchmark: the gateway under 64 concurrent streamed requests on the default model.

One command: ``.venv/bin/python bench/bench_gateway.py [--json] [--requests 64]``.
In one run, the same requests (same prompts, 64 tokens each, EOS ignored):

1. the engine alone, static batches of 16 (``engine.generate``);
2. the gateway on 127.0.0.1 with **continuous batching** (the default of ``serve``: up to
   64 requests in the running batch, each joining at the next decode step);
3. the same gateway with the **static batcher** (batches of 16, as before continuous
   batching), the baseline.

Each gateway run: uvicorn, mission control planning each request on the Three-Body
constellation with the China + KSAT + AWS stations, orbital waits reported but not
waited (``--no-wait``), 64 clients streaming at once over HTTP from a separate process.
Prints errors, time to first token (p50/p99), and the wall time for all 64 answers;
``--json`` emits ``ttft_p50_s`` / ``ttft_p99_s`` (continuous) at the top level.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import threading
import time
from typing import Any

import httpx
import numpy as np

from starcompute import load_constellation, load_stations, parse_utc
from starcompute.compute.batcher import off_main_thread
from starcompute.compute.engine import GenerationRequest, Message
from starcompute.compute.real import TransformersEngine
from starcompute.gateway.app import create_app
from starcompute.mission.control import Mission
from starcompute.mission.requestlog import RequestLog
from starcompute.mission.twin import twin_segment
from starcompute.times import OrbitClock

START = parse_utc("2025-11-20T00:00:00Z")
TOKENS = 64
BATCH = 16
PROMPTS = [f"Write a short note about satellite number {i}." for i in range(256)]


def engine_alone(engine: TransformersEngine, n: int) -> float:
    requests = [
        GenerationRequest(
            messages=(Message("user", PROMPTS[i]),), max_tokens=TOKENS, ignore_eos=True
        )
        for i in range(n)
    ]
    t0 = time.perf_counter()
    engine.generate(requests)
    return time.perf_counter() - t0


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _client(
    client: httpx.AsyncClient, url: str, i: int, t_start: float, stream: bool
) -> dict[str, Any]:
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": PROMPTS[i]}],
        "max_tokens": TOKENS,
        "stream": stream,
        "ignore_eos": True,
        "temperature": 0,  # greedy, as the engine-alone run
    }
    if not stream:
        r = await client.post(url + "/v1/chat/completions", json=body)
        if r.status_code != 200:
            return {"error": f"HTTP {r.status_code}"}
        done = time.perf_counter() - t_start
        return {"ttft": None, "pieces": r.json()["usage"]["completion_tokens"], "done": done}
    ttft, pieces = None, 0
    async with client.stream("POST", url + "/v1/chat/completions", json=body) as r:
        if r.status_code != 200:
            return {"error": f"HTTP {r.status_code}"}
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                return {"error": chunk["error"]["message"]}
            delta = chunk["choices"][0]["delta"] if chunk["choices"] else {}
            if delta.get("content"):
                pieces += 1
                if ttft is None:
                    ttft = time.perf_counter() - t_start
    return {"ttft": ttft, "pieces": pieces, "done": time.perf_counter() - t_start}


def _clients(url: str, n: int, stream: bool) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(timeout=600, limits=limits) as client:
            t0 = time.perf_counter()
            return list(
                await asyncio.gather(*(_client(client, url, i, t0, stream) for i in range(n)))
            )

    return asyncio.run(run())


def gateway(
    engine: TransformersEngine, n: int, stream: bool = True, continuous: bool = True
) -> dict[str, Any]:
    import uvicorn

    const = load_constellation("three-body-12")
    mission = Mission.build(const, load_stations("china,ksat,aws"), START, 6 * 3600.0)
    segment = twin_segment(
        mission,
        engine,
        OrbitClock(START, 1.0, wait=False),
        RequestLog(),
        max_queue=n,
        max_batch=n if continuous else BATCH,
        model="smollm2",
        continuous=continuous,
    )
    batcher = segment.link.batcher  # type: ignore[attr-defined]
    app = create_app(segment, "smollm2", max_tokens_limit=TOKENS)
    port = _port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"

    try:
        # the clients run in their own process, as real clients would
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(1) as pool:
            t0 = time.perf_counter()
            pool.apply(_clients, (url, 1, stream))  # warm: the client process, first-call costs
            t0, m0 = time.perf_counter(), time.monotonic()
            results = pool.apply(_clients, (url, n, stream))
            wall, m1 = time.perf_counter() - t0, time.monotonic()
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        segment.close()
    timed = [b for b in batcher.history if b[0] >= m0]  # the requests' batches / steps
    errors = [r["error"] for r in results if "error" in r]
    ttft = np.array([r["ttft"] for r in results if r.get("ttft") is not None])
    out = {
        "batching": "continuous" if continuous else "static",
        "requests": n,
        "errors": len(errors),
        "error_examples": errors[:3],
        "wall_s": wall,
        "ttft_p50_s": float(np.percentile(ttft, 50)) if len(ttft) else None,
        "ttft_p99_s": float(np.percentile(ttft, 99)) if len(ttft) else None,
        "tokens": int(sum(r.get("pieces", 0) for r in results)),
        "before_first_pass_s": timed[0][0] - m0 if timed else None,
        "after_last_pass_s": m1 - timed[-1][1] if timed else None,
    }
    if continuous:
        out.update(
            decode_steps=len(timed),
            largest_batch=max((size for _, _, size in timed), default=0),
            prefix_hits=batcher.prefix_hits,
        )
    else:
        out["batch_runs"] = [(round(b - a, 2), size) for a, b, size in timed]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--no-stream", action="store_true", help="plain (non-streamed) requests")
    args = parser.parse_args()
    # torch runs off the main thread in both (see compute.batcher.off_main_thread)
    engine = off_main_thread(lambda: TransformersEngine(max_batch=BATCH))
    off_main_thread(lambda: engine_alone(engine, 4))  # warm up
    alone = off_main_thread(lambda: engine_alone(engine, args.requests))
    static = gateway(engine, args.requests, stream=not args.no_stream, continuous=False)
    gw = gateway(engine, args.requests, stream=not args.no_stream)
    out = {
        "ttft_p50_s": gw["ttft_p50_s"],
        "ttft_p99_s": gw["ttft_p99_s"],
        "all_answered_s": gw["wall_s"],
        "static_all_answered_s": static["wall_s"],
        "engine_alone_s": alone,
        "continuous": gw,
        "static": static,
    }
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"{args.requests} streamed requests x {TOKENS} tokens through the gateway")
    for run in (gw, static):
        print(
            f"  {run['batching']:>10}: errors {run['errors']}, time to first token p50 "
            f"{run['ttft_p50_s']:.2f} s, p99 {run['ttft_p99_s']:.2f} s, all answered in "
            f"{run['wall_s']:.2f} s"
        )
    print(f"  engine alone, static batches of {BATCH}: {alone:.2f} s")


if __name__ == "__main__":
    main()
