"""A short soak (the `make soak` harness): the gateway as a subprocess on 127.0.0.1, 12
clients for 20 s with satellite, station and link failures and weight upsets injected and
streams cut by their clients; nothing lost, nothing delivered twice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_short_soak_loses_nothing() -> None:
    # x10 and upsets at the model's rate: enough of each to exercise the path, while a
    # slow (shared) CI machine's batches still fit between the passes they were planned for
    args = (
        "--clients 12 --minutes 0.34 --fault-every-s 4 --hangup 0.2 --grace-s 240 "
        "--time-scale 10 --seu-acceleration 1 --json"
    )
    cmd = [sys.executable, str(ROOT / "bench" / "soak.py"), *args.split()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    doc = json.loads(done.stdout)
    assert doc["lost"] == 0 and doc["duplicated"] == 0
    # how many depends on the machine's speed (timings are not asserted); none goes missing
    assert doc["delivered"] >= 1 and doc["delivered"] + doc["failed"] == doc["queries"]
    assert doc["server_completed_minus_delivered"] == 0 and doc["server_in_flight_at_end"] == 0
    assert doc["faults_injected"] >= 2 and "battery:satellite" in doc["faults_by_cause"]
    rad = doc["radiation"]
    assert rad["found_within_one_scrub"] == rad["upsets_injected"]  # every upset found
