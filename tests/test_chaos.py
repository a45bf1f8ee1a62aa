"""A short chaos run (the `make chaos` harness, bench/chaos.py): the testbed's real
processes (a node running SmolLM2, the relays, the link emulator, the ground segment with
its gateway) SIGKILLed and restarted at random under clients that retry with
Idempotency-Key; nothing lost, nothing answered twice, every request accounted for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_short_chaos_loses_nothing() -> None:
    args = "--clients 4 --minutes 0.8 --kill-every-s 5 --nodes 1 --seed 3 --json"
    cmd = [sys.executable, str(ROOT / "bench" / "chaos.py"), *args.split()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = json.loads(done.stdout)
    assert doc["lost"] == 0 and doc["duplicated"] == 0 and doc["accounted"]
    assert doc["delivered"] >= 1 and doc["delivered"] + doc["failed"] == doc["requests"]
    # every kind of process died at least once (the killer takes each kind in turn)
    assert {"node", "relays", "emulator", "ground"} <= set(doc["kills_by_role"]), doc
    assert all(p["lives"] >= 1 for p in doc["rss"].values())
