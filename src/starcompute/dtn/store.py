"""The custody store: every bundle a node has accepted, on disk (SQLite, WAL).

A bundle enters in one transaction before its arrival is acknowledged, and leaves
only when the next hop acknowledged it (or it was delivered, or its lifetime ran out):
a node killed with SIGKILL and restarted finds everything it had accepted. Identities
of bundles that left are kept until their lifetime ends, so a bundle for this node
that comes again (the previous hop never heard the acknowledgement) is recognised and
not delivered twice. A bundle to forward that comes again is taken again: it may be a
retransmission, but it may also have come back round a routing loop (each node routes
on its own), and refusing it would lose it; the destination drops the extra copy.
Counters (rejections by reason, bundles forwarded, ...) live in the same file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from starcompute.dtn.bundle import Bundle, decode

SWEEP_MS = 60_000  # forget expired identities about once a minute (orbit time)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS bundles (
    id TEXT PRIMARY KEY, destination TEXT NOT NULL, data BLOB NOT NULL,
    stored_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL, local INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS gone (id TEXT PRIMARY KEY, expires_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Stored:
    """A bundle in the store, as it was accepted."""

    bundle: Bundle
    data: bytes
    stored_ms: int

    @property
    def id(self) -> str:
        return self.bundle.id


class BundleStore:
    """Bundles held by one node (``local``: waiting for this node's application). What
    is on disk is mirrored in memory, so routing passes never read or parse it again."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # durable against a process crash
        self.db.executescript(_SCHEMA)
        self._held: dict[str, tuple[Stored, bool]] = {}  # id -> (bundle, local), in order
        self._swept_ms = 0
        rows = self.db.execute("SELECT data, stored_ms, local FROM bundles ORDER BY rowid")
        for data, stored_ms, local in rows.fetchall():
            stored = Stored(decode(bytes(data)), bytes(data), int(stored_ms))
            self._held[stored.id] = (stored, bool(local))

    def close(self) -> None:
        self.db.close()

    def add(self, bundle: Bundle, data: bytes, now_ms: int, local: bool) -> bool:
        """Take custody of ``bundle``; False if it is held already, or is for this node
        (``local``) and was delivered already."""
        bid = bundle.id
        with self.db:
            if local and self.db.execute("SELECT 1 FROM gone WHERE id = ?", (bid,)).fetchone():
                return False
            cur = self.db.execute(
                "INSERT OR IGNORE INTO bundles VALUES (?, ?, ?, ?, ?, ?)",
                (bid, str(bundle.destination), data, now_ms, bundle.expires_ms, int(local)),
            )
        if cur.rowcount != 1:
            return False
        self._held[bid] = (Stored(bundle, bytes(data), now_ms), local)
        return True

    def holds(self, bundle_id: str) -> bool:
        return bundle_id in self._held

    def remove(self, bundle_id: str, expires_ms: int) -> None:
        """The bundle left (acknowledged by the next hop, delivered or dropped); its
        identity is remembered until ``expires_ms`` to recognise retransmissions."""
        with self.db:
            self.db.execute("DELETE FROM bundles WHERE id = ?", (bundle_id,))
            self.db.execute("INSERT OR REPLACE INTO gone VALUES (?, ?)", (bundle_id, expires_ms))
        self._held.pop(bundle_id, None)

    def queue(self, local: bool) -> Iterator[Stored]:
        """Bundles held, in the order they were accepted."""
        return iter([s for s, is_local in self._held.values() if is_local == local])

    def expire(self, now_ms: int) -> list[str]:
        """Drop bundles whose lifetime ended (and forget identities past theirs)."""
        ids = [bid for bid, (s, _) in self._held.items() if s.bundle.expires_ms <= now_ms]
        if not ids and now_ms - self._swept_ms < SWEEP_MS:
            return []
        self._swept_ms = now_ms
        with self.db:
            self.db.execute("DELETE FROM bundles WHERE expires_ms <= ?", (now_ms,))
            self.db.execute("DELETE FROM gone WHERE expires_ms <= ?", (now_ms,))
        for bid in ids:
            self._held.pop(bid, None)
        return ids

    def count(self, name: str, n: int = 1) -> None:
        self.db.execute(
            "INSERT INTO counters VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, n),
        )

    def counters(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.db.execute("SELECT name, value FROM counters")}

    def sizes(self) -> dict[str, int]:
        """Bundles and bytes held, to forward and for this node."""
        out = {"forward": 0, "local": 0, "bytes": 0}
        for stored, local in self._held.values():
            out["local" if local else "forward"] += 1
            out["bytes"] += len(stored.data)
        return out
