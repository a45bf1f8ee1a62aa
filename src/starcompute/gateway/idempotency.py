"""Idempotent chat requests: a client that retries with the same ``Idempotency-Key``
header gets the first answer again instead of a second run.

The convention is the IETF draft "The Idempotency-Key HTTP Header Field"
(draft-ietf-httpapi-idempotency-key-header), as Stripe uses it: a key belongs to one API
key (``owner``) and one request body; a retry while the first request is still in flight
waits for it; a retry after it completed gets its answer (``Idempotent-Replayed: true``);
a retry after it failed or was cancelled runs it again (nothing was delivered); the same
key with another body is a client error. Entries expire after ``ttl_s`` and at most
``max_entries`` completed answers are kept (oldest first out), so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
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


@dataclass(slots=True)
class Idempotency:
    max_entries: int = 10_000
    ttl_s: float = 24 * 3600.0
    replayed: int = 0
    _entries: OrderedDict[tuple[str, str], Entry] = field(default_factory=OrderedDict)
    _stored: int = 0  # entries with an answer

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
            entry = self._entries.get((owner, key))
            if entry is None:
                self._entries[(owner, key)] = Entry(fingerprint)
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

    def complete(self, owner: str, key: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        entry = self._entries.get((owner, key))
        if entry is None:
            return
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
