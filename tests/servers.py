"""Servers the tests start on 127.0.0.1 and stop: a free port, and ``starcompute serve``
as a process of its own."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(port: int, *options: str, ready_s: float = 180.0) -> subprocess.Popen[bytes]:
    """``starcompute serve --port PORT OPTIONS...``, returned once ``/healthz`` answers;
    the caller stops it (the process is killed here if it never comes up)."""
    server = subprocess.Popen(
        [sys.executable, "-m", "starcompute.cli.main", "serve", "--port", str(port), *options],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + ready_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.5)
        if server.poll() is not None:
            break
    server.kill()
    server.wait(timeout=30)
    raise AssertionError(f"starcompute serve {' '.join(options)} did not come up")


class AppServer:
    """An ASGI app served by uvicorn on a thread of this process, on 127.0.0.1."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
