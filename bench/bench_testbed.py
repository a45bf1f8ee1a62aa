"""The testbed under load: 100 chat queries through 12 node processes at x60.

Starts `starcompute testbed --serve` (three-body-12, stations china + ksat + aws, every
satellite a node process running SmolLM2, the link emulator, the ground segment and the
gateway) on 127.0.0.1, waits for /healthz, sends the queries from a pool of clients
(official openai client, greedy), then reads `starcompute testbed status --json`.

Reports: seconds to /healthz ready; queries delivered and failed; per answer the
emulated delivery (its last chunk on the ground) minus the plan's, p50 and p99, in orbit
seconds, with the host's and the predicted (hardware) inference time beside them (the
difference is mostly the host: 12 engines on this machine's cores), the query's arrival
on board minus the plan's, and each chunk's trip down (delivered minus released); per
process RSS, PSS (shared pages divided among the processes mapping them) and CPU
seconds, their totals, and how much the machine's memory in use grew.

    .venv/bin/python bench/bench_testbed.py [--queries 100] [--clients 8] [--json]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

PROMPTS = [
    "What is the capital of France?",
    "Name a planet in our solar system.",
    "What gas do plants absorb from the air?",
    "How many days are in a week?",
    "What is the boiling point of water in Celsius?",
    "Who wrote Romeo and Juliet?",
    "What is 12 times 12?",
    "Name a primary colour.",
    "What is the largest ocean on Earth?",
    "Which metal is liquid at room temperature?",
]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ask(url: str, i: int, max_tokens: int) -> dict[str, Any]:
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=900)
    t0 = time.perf_counter()
    try:
        r = client.chat.completions.create(
            model="smollm2-135m-instruct",
            messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
            max_tokens=max_tokens,
            temperature=0,
        )
    except Exception as exc:  # an explicit error reached the client
        return {"error": f"{type(exc).__name__}: {exc}"}
    trace = r.model_extra["starcompute"]["trace"]
    obs = trace["observed"]
    down = [_s(c["delivered"]) - _s(c["released"]) for c in obs["chunks"]]
    return {
        "uplink_late_s": obs["query_received_minus_planned_s"],
        "downlink_s": down,
        "wall_s": time.perf_counter() - t0,
        "tokens": r.usage.completion_tokens,
        "finish": r.choices[0].finish_reason,
        "late_s": obs["delivered_minus_planned_s"],
        "planned_total_s": trace["timings_s"]["total"],
        "host_inference_s": obs["host_inference_s"],
        "predicted_inference_s": obs["predicted_inference_s"],
        "satellite": obs["serving_satellite"],
        "chunks": len(obs["chunks"]),
    }


def _s(utc: str) -> float:
    from starcompute.times import parse_utc

    return float(parse_utc(utc).astype("datetime64[ns]").astype(np.int64)) / 1e9


def _used_mb() -> float:
    """Memory in use on the machine (MemTotal - MemAvailable), MB."""
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    kb = int(info["MemTotal"].split()[0]) - int(info["MemAvailable"].split()[0])
    return kb / 1e3


def run(queries: int, clients: int, max_tokens: int, scale: float) -> dict[str, Any]:
    run_dir = Path(tempfile.mkdtemp(prefix="bench-testbed-")) / "run"
    port = _port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "starcompute",
        "testbed",
        "--serve",
        "--port",
        str(port),
        "--constellation",
        "three-body-12",
        "--stations",
        "china,ksat,aws",
        "--time-scale",
        str(scale),
        "--dir",
        str(run_dir),
    ]
    t0, used0 = time.perf_counter(), _used_mb()
    log = (run_dir.parent / "launcher.log").open("wb")
    launcher = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    pool = concurrent.futures.ThreadPoolExecutor(clients)
    try:
        ready_s = _wait_ready(url, launcher, t0)
        status_idle = _status(run_dir)
        t1 = time.perf_counter()
        results = list(pool.map(lambda i: _ask(url, i, max_tokens), range(queries)))
        load_s = time.perf_counter() - t1
        status = _status(run_dir)
        status["machine_used_mb"] = round(_used_mb() - used0, 1)
    finally:
        launcher.send_signal(signal.SIGTERM)  # its processes end with it
        launcher.wait(60)
        pool.shutdown(wait=False, cancel_futures=True)
        log.close()
    return _summary(results, ready_s, load_s, status_idle, status, queries, clients, scale)


def _wait_ready(url: str, launcher: subprocess.Popen[bytes], t0: float) -> float:
    while True:
        if launcher.poll() is not None:
            raise SystemExit(f"the testbed exited with code {launcher.returncode}")
        try:
            if httpx.get(url + "/healthz", timeout=2).json().get("status") == "ok":
                return time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.25)


def _status(run_dir: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "starcompute", "testbed", "status", "--dir", str(run_dir), "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return dict(json.loads(out.stdout))


def _summary(
    results: list[dict[str, Any]],
    ready_s: float,
    load_s: float,
    idle: dict[str, Any],
    status: dict[str, Any],
    queries: int,
    clients: int,
    scale: float,
) -> dict[str, Any]:
    ok = [r for r in results if "late_s" in r]
    late = np.array([r["late_s"] for r in ok]) if ok else np.array([np.nan])

    def pct(values: np.ndarray, q: float) -> float:
        return round(float(np.percentile(values, q)), 3)

    host = np.array([r["host_inference_s"] for r in ok]) if ok else np.array([np.nan])
    predicted = np.array([r["predicted_inference_s"] for r in ok]) if ok else np.array([np.nan])
    return {
        "queries": queries,
        "clients": clients,
        "time_scale": scale,
        "ready_s": round(ready_s, 1),
        "delivered": len(ok),
        "failed": len(results) - len(ok),
        "errors": [r["error"] for r in results if "error" in r][:3],
        "load_wall_s": round(load_s, 1),
        "tokens": int(sum(r["tokens"] for r in ok)),
        "satellites_used": len({r["satellite"] for r in ok}),
        "emulated_minus_planned_s": {"p50": pct(late, 50), "p99": pct(late, 99)},
        "host_inference_s": {"p50": pct(host, 50), "p99": pct(host, 99)},
        "query_received_minus_planned_s": _pcts([r["uplink_late_s"] for r in ok]),
        "chunk_downlink_s": _pcts([d for r in ok for d in r["downlink_s"]]),
        "predicted_inference_s": {"p50": pct(predicted, 50), "p99": pct(predicted, 99)},
        "wall_per_query_s": {"p50": pct(np.array([r["wall_s"] for r in ok]), 50)} if ok else {},
        "processes": [
            {k: p.get(k) for k in ("role", "name", "rss_mb", "pss_mb", "cpu_s")}
            for p in status["processes"]
        ],
        "total_idle": idle["total"],
        "total_after": status["total"],
        "machine_memory_used_delta_mb": status["machine_used_mb"],
    }


def _pcts(values: list[float]) -> dict[str, float]:
    """p50 and p99 (None where there is nothing to measure)."""
    v = np.array([x for x in values if x is not None], dtype=float)
    if not len(v):
        return {}
    return {
        "p50": round(float(np.percentile(v, 50)), 4),
        "p99": round(float(np.percentile(v, 99)), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--time-scale", type=float, default=60.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the testbed on the way out
    doc = run(args.queries, args.clients, args.max_tokens, args.time_scale)
    if args.json:
        print(json.dumps(doc, indent=1))
        return
    print(
        f"ready in {doc['ready_s']} s; {doc['delivered']}/{doc['queries']} delivered, "
        f"{doc['failed']} failed, in {doc['load_wall_s']} s ({doc['clients']} clients)"
    )
    e = doc["emulated_minus_planned_s"]
    print(f"emulated - planned delivery: p50 {e['p50']} s, p99 {e['p99']} s (orbit)")
    h, p = doc["host_inference_s"], doc["predicted_inference_s"]
    print(f"inference: host p50 {h['p50']} s, predicted (hardware) p50 {p['p50']} s (orbit)")
    for proc in doc["processes"]:
        print(
            f"  {proc['role']:8} {proc['name']:24} RSS {proc['rss_mb']:7.1f} MB  "
            f"PSS {proc['pss_mb']:7.1f} MB  CPU {proc['cpu_s']:7.1f} s"
        )
    t = doc["total_after"]
    print(
        f"together: RSS {t['rss_mb']:.0f} MB, PSS {t['pss_mb']:.0f} MB; the machine's memory "
        f"in use grew {doc['machine_memory_used_delta_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
