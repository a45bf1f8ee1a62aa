"""The node's own records beside its bundle store (same SQLite file): the jobs it
verified (so a restart resumes them without asking the telecommand again), how many
answer chunks of each it has sent, its key and anti-replay state, and its battery and
radiator state."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    bundle_id TEXT PRIMARY KEY, query_id TEXT NOT NULL, query BLOB NOT NULL,
    received_ms INTEGER NOT NULL, chunks_sent INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'verified'
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class JobRow:
    bundle_id: str
    query_id: str
    query: bytes
    received_ms: int
    chunks_sent: int
    state: str


class Journal:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.db.executescript(_SCHEMA)

    def job(self, bundle_id: str) -> JobRow | None:
        row = self.db.execute("SELECT * FROM jobs WHERE bundle_id = ?", (bundle_id,)).fetchone()
        return None if row is None else JobRow(row[0], row[1], bytes(row[2]), *row[3:])

    def verified(
        self, bundle_id: str, query_id: str, query: bytes, received_ms: int, keys: dict[str, Any]
    ) -> None:
        """A job passed its telecommand check: recorded with the new anti-replay state in
        one transaction."""
        with self.db:
            self.db.execute(
                "INSERT OR IGNORE INTO jobs (bundle_id, query_id, query, received_ms) "
                "VALUES (?, ?, ?, ?)",
                (bundle_id, query_id, query, received_ms),
            )
            self._put("keys", keys)

    def chunk_sent(self, bundle_id: str, seq: int, final: bool) -> None:
        with self.db:
            self.db.execute(
                "UPDATE jobs SET chunks_sent = MAX(chunks_sent, ?), state = ? WHERE bundle_id = ?",
                (seq + 1, "answered" if final else "running", bundle_id),
            )

    def get(self, key: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def put(self, key: str, value: dict[str, Any]) -> None:
        with self.db:
            self._put(key, value)

    def keys(self) -> dict[str, Any] | None:
        return self.get("keys")

    def save_keys(self, keys: dict[str, Any]) -> None:
        self.put("keys", keys)

    def _put(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, json.dumps(value)))

    def states(self) -> dict[str, int]:
        return {
            s: int(n) for s, n in self.db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY 1")
        }
