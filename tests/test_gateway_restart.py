"""Exactly-once across a gateway crash (issue 19): idempotency keys live beside the
request log in SQLite, so a client retrying after ``serve`` was SIGKILLed and restarted
gets the answer it was given before, once, not a second run."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from servers import free_port, serve
from starcompute.gateway.idempotency import Idempotency

MODEL = "smollm2-135m-instruct"


def _serve(port: int, db: Path) -> subprocess.Popen[bytes]:
    options = ["--hours", "2", "--no-wait", "--max-batch", "4", "--log-db", str(db)]
    return serve(port, *options)


def _ask(port: int, key: str) -> httpx.Response:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Name a colour."}],
        "max_tokens": 8,
        "temperature": 1.0,  # sampled: a second run would (almost surely) differ
    }
    return httpx.post(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        json=body,
        headers={"Idempotency-Key": key},
        timeout=120,
    )


def test_a_retry_after_a_gateway_crash_gets_the_same_answer_once(tmp_path: Path) -> None:
    port, db = free_port(), tmp_path / "requests.sqlite"
    first_server = _serve(port, db)
    try:
        first = _ask(port, "order-17")
        assert first.status_code == 200, first.text
    finally:
        first_server.send_signal(signal.SIGKILL)  # no clean shutdown
        first_server.wait(timeout=30)
    second_server = _serve(port, db)
    try:
        again = _ask(port, "order-17")
        fresh = _ask(port, "order-18")
    finally:
        second_server.terminate()
        second_server.wait(timeout=60)
    assert again.status_code == 200, again.text
    assert again.headers.get("Idempotent-Replayed") == "true"
    text = first.json()["choices"][0]["message"]["content"]
    assert again.json()["choices"][0]["message"]["content"] == text
    assert again.json()["id"] == first.json()["id"]  # the same answer, not a second run
    assert fresh.status_code == 200 and "Idempotent-Replayed" not in fresh.headers
    from starcompute.mission.requestlog import RequestLog

    log = RequestLog(db)
    try:
        assert log.count() == 2  # order-17 ran once (before the crash), order-18 once
    finally:
        log.close()


def test_keys_in_sqlite_survive_a_new_process(tmp_path: Path) -> None:
    """In-process: a completed key replays from the file; a key whose claimant died
    before answering runs again (nothing was delivered); another body is refused."""
    from starcompute.errors import IdempotencyError

    path = tmp_path / "keys.sqlite"

    async def first_life() -> None:
        idem = Idempotency(path=path)
        assert await idem.claim("alice", "done", "f1") is None
        idem.complete("alice", "done", {"id": "chatcmpl-1"}, {"X-Request-Id": "chatcmpl-1"})
        assert await idem.claim("alice", "cut", "f2") is None  # dies before answering

    async def second_life() -> None:
        idem = Idempotency(path=path)
        replay = await idem.claim("alice", "done", "f1")
        assert replay is not None and replay.body == {"id": "chatcmpl-1"}
        assert replay.headers == {"X-Request-Id": "chatcmpl-1"}
        assert await idem.claim("alice", "cut", "f2") is None  # runs again
        assert await idem.claim("bob", "done", "f1") is None  # a key belongs to its owner
        with pytest.raises(IdempotencyError, match="different request body"):
            await idem.claim("alice", "done", "another body")

    asyncio.run(first_life())
    asyncio.run(second_life())


def test_expired_keys_are_dropped_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite"

    async def go() -> None:
        idem = Idempotency(path=path)
        await idem.claim("a", "k", "f")
        idem.complete("a", "k", {"id": "x"}, {})

    asyncio.run(go())

    async def later() -> None:
        idem = Idempotency(path=path, ttl_s=-1.0)  # everything kept is older than the TTL
        assert await idem.claim("a", "k", "f") is None

    asyncio.run(later())
