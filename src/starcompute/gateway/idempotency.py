"""Idempotent chat requests: a client that retries with the same ``Idempotency-Key``
header gets the first answer again instead of a second run.

The convention is the IETF draft "The Idempotency-Key HTTP Header Field"
(draft-ietf-httpapi-idempotency-key-header), as Stripe uses it: a key belongs to one API
key (``owner``) and one request body; a retry while the first request is still in flight
waits for it; a retry after it completed gets its answer (``Idempotent-Replayed: true``);
a retry after it failed or was cancelled runs it again (nothing was delivered); the same
key with another body is a client error. Entries expire after ``ttl_s`` and at most
``max_entries`` completed answers are kept (oldest first out), so memory stays bounded.

With a ``path`` (``serve`` gives its request log's SQLite file) the keys survive the
gateway: each claim is written before the request runs and each answer when it is
delivered, so after a crash and restart a retry gets the completed answer, once. A key
claimed by a gateway process that is gone never completed: nothing was delivered for
it, so the retry runs it again (at most one answer ever reaches the client per key).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from starcompute.errors import IdempotencyError

MAX_KEY_CHARS = 255


@dataclass(slots=True)
class Entry:
    fingerprint: str
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    body: dict[str, Any] | None = None  # the chat.completion of a delivered answer
    headers: dict[str, str] = field(default_factory=dict)
    stored_s: float = 0.0


_SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency (
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    process TEXT NOT NULL,
    body TEXT,
    headers TEXT,
    stored_unix REAL NOT NULL,
    PRIMARY KEY (owner, key)
)
"""


class KeyStore:
    """The keys in SQLite: claims, answers, and which gateway process claimed each."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.process = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"  # this gateway's run
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)

    def load(self, owner: str, key: str) -> tuple[str, str, dict[str, Any] | None, dict[str, str]]:
        """(fingerprint, process, answer or None, headers); KeyError if not kept."""
        with self._lock:
            row = self._db.execute(
                "SELECT fingerprint, process, body, headers FROM idempotency "
                "WHERE owner = ? AND key = ?",
                (owner, key),
            ).fetchone()
        if row is None:
            raise KeyError(key)
        body = json.loads(row[2]) if row[2] else None
        return row[0], row[1], body, json.loads(row[3]) if row[3] else {}

    def claim(self, owner: str, key: str, fingerprint: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO idempotency (owner, key, fingerprint, process, "
                "stored_unix) VALUES (?, ?, ?, ?, ?)",
                (owner, key, fingerprint, self.process, time.time()),
            )

    def complete(self, owner: str, key: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE idempotency SET body = ?, headers = ?, stored_unix = ? "
                "WHERE owner = ? AND key = ?",
                (json.dumps(body), json.dumps(headers), time.time(), owner, key),
            )

    def forget(self, owner: str, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM idempotency WHERE owner = ? AND key = ?", (owner, key))

    def expire(self, ttl_s: float, keep: int) -> None:
        """Drop answers older than ``ttl_s`` and all but the newest ``keep``."""
        with self._lock:
            self._db.execute(
                "DELETE FROM idempotency WHERE stored_unix < ?", (time.time() - ttl_s,)
            )
            self._db.execute(
                "DELETE FROM idempotency WHERE rowid NOT IN (SELECT rowid FROM idempotency "
                "ORDER BY stored_unix DESC LIMIT ?)",
                (keep,),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass(slots=True)
class Idempotency:
    max_entries: int = 10_000
    ttl_s: float = 24 * 3600.0
    path: str | os.PathLike[str] | None = None  # SQLite file: the keys survive a restart
    replayed: int = 0
    _entries: OrderedDict[tuple[str, str], Entry] = field(default_factory=OrderedDict)
    _stored: int = 0  # entries with an answer
    store: KeyStore | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.path is not None:
            self.store = KeyStore(self.path)
            self.store.expire(self.ttl_s, self.max_entries)

    @staticmethod
    def check_key(key: str) -> str:
        if not 1 <= len(key) <= MAX_KEY_CHARS or not key.isprintable() or not key.isascii():
            raise IdempotencyError(
                400,
                f"Idempotency-Key must be 1..{MAX_KEY_CHARS} printable ASCII characters",
                "invalid_idempotency_key",
            )
        return key

    @staticmethod
    def fingerprint(payload: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    async def claim(self, owner: str, key: str, fingerprint: str) -> Entry | None:
        """None: the caller runs the request and must ``complete`` or ``abandon`` it; an
        entry with a body: the answer to replay. Waits while another run is in flight."""
        self._expire()
        while True:
            entry = self._entries.get((owner, key)) or self._kept(owner, key)
            if entry is None:
                self._entries[(owner, key)] = Entry(fingerprint)
                if self.store is not None:
                    self.store.claim(owner, key, fingerprint)
                return None
            if entry.fingerprint != fingerprint:
                raise IdempotencyError(
                    422,
                    "this Idempotency-Key was used with a different request body; "
                    "use a new key for a new request",
                    "idempotency_key_reused",
                )
            if entry.body is not None:
                self.replayed += 1
                self._entries.move_to_end((owner, key))
                return entry
            await entry.finished.wait()  # the first run ends: replay it or run again

    def _kept(self, owner: str, key: str) -> Entry | None:
        """An answer a previous gateway process delivered (now in memory again); None if
        the key is unknown or its claimant died before answering (it runs again)."""
        if self.store is None:
            return None
        try:
            fingerprint, process, body, headers = self.store.load(owner, key)
        except KeyError:
            return None
        if body is None and process != self.store.process:
            return None  # claimed by a gateway that is gone: nothing was delivered
        entry = Entry(fingerprint, body=body, headers=headers, stored_s=time.monotonic())
        if body is not None:
            entry.finished.set()
            self._stored += 1
        self._entries[(owner, key)] = entry
        return entry

    def complete(self, owner: str, key: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        entry = self._entries.get((owner, key))
        if entry is None:
            return
        if self.store is not None:
            self.store.complete(owner, key, body, headers)
            if (self._stored + 1) % 100 == 0:  # every hundredth answer kept
                self.store.expire(self.ttl_s, self.max_entries)
        entry.body, entry.headers, entry.stored_s = body, headers, time.monotonic()
        entry.finished.set()
        self._entries.move_to_end((owner, key))
        self._stored += 1
        if self._stored > self.max_entries:  # the oldest stored answer goes
            oldest = next(k for k, e in self._entries.items() if e.body is not None)
            del self._entries[oldest]
            self._stored -= 1

    def abandon(self, owner: str, key: str) -> None:
        """The run failed or was cancelled: forget the key (a retry runs again)."""
        entry = self._entries.get((owner, key))
        if entry is not None and entry.body is None:
            del self._entries[(owner, key)]
            entry.finished.set()
            if self.store is not None:
                self.store.forget(owner, key)

    def __len__(self) -> int:
        return len(self._entries)

    def _expire(self) -> None:
        now = time.monotonic()
        while self._entries:
            k, entry = next(iter(self._entries.items()))
            if entry.body is None or now - entry.stored_s < self.ttl_s:
                break
            del self._entries[k]
            self._stored -= 1
