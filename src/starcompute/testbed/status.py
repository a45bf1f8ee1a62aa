"""``starcompute testbed status``: each process of a running testbed (role, name, pid,
address, memory, CPU) and the links the emulator has up now."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from starcompute.errors import InputError
from starcompute.node.config import parse_address
from starcompute.testbed.config import STATE


def process_info(pid: int) -> dict[str, Any]:
    """Memory (RSS, and PSS: shared pages divided among the processes that map them)
    and CPU time of a live process; ``alive`` False if it is gone."""
    import psutil

    try:
        p = psutil.Process(pid)
        mem = p.memory_full_info()
        cpu = p.cpu_times()
        return {
            "alive": p.is_running() and p.status() != psutil.STATUS_ZOMBIE,
            "rss_mb": round(mem.rss / 1e6, 1),
            "pss_mb": round(getattr(mem, "pss", mem.rss) / 1e6, 1),
            "cpu_s": round(cpu.user + cpu.system, 2),
        }
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return {"alive": False, "rss_mb": 0.0, "pss_mb": 0.0, "cpu_s": 0.0}


def ask_emulator(address: str, timeout_s: float = 3.0) -> dict[str, Any]:
    """The emulator's STATUS report (links up now, bytes carried per link)."""
    host, port = parse_address(address, "emulator")
    with socket.create_connection((host, port), timeout=timeout_s) as s:
        s.sendall(b"STATUS\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return dict(json.loads(data))


def status(run: Path) -> dict[str, Any]:
    path = run / STATE
    if not path.is_file():
        raise InputError(f"no testbed is running from {run} ({STATE} is missing)")
    state = json.loads(path.read_text(encoding="utf-8"))
    processes = []
    for proc in state["processes"]:
        info = process_info(int(proc["pid"])) if proc.get("pid") else {"alive": False}
        processes.append({**proc, **info})
    alive = [p for p in processes if p.get("alive")]
    doc: dict[str, Any] = {
        "run": state["run"],
        "gateway": state.get("gateway"),
        "processes": processes,
        "total": {
            "processes": len(alive),
            "rss_mb": round(sum(p["rss_mb"] for p in alive), 1),
            "pss_mb": round(sum(p["pss_mb"] for p in alive), 1),
        },
    }
    try:
        emulator = ask_emulator(state["emulator"])
        doc.update(
            orbit_time=emulator["orbit_time"],
            links_up=emulator["links_up"],
            carried=emulator["carried"],
        )
    except (OSError, ValueError) as exc:
        doc.update(links_up=None, emulator_error=f"emulator unreachable: {exc}")
    return doc
