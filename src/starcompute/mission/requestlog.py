"""The request log: every query the ground segment took, in SQLite (stdlib ``sqlite3``).

One row per request: id, times, the client's key id, model, status, token counts, wall
times and the orbital trace (JSON). Prompts and answers are not stored. A path of
``:memory:`` keeps the log in memory (tests); writes are serialised by a lock, so the
log can be shared by the event loop and worker threads.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    created_unix REAL NOT NULL,
    key_id TEXT,
    model TEXT NOT NULL,
    stream INTEGER NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    wall_ttft_s REAL,
    wall_total_s REAL,
    orbit_submitted TEXT,
    orbit_delivered TEXT,
    trace TEXT
)
"""
_COLUMNS = (
    "id",
    "created_unix",
    "key_id",
    "model",
    "stream",
    "status",
    "error",
    "prompt_tokens",
    "completion_tokens",
    "wall_ttft_s",
    "wall_total_s",
    "orbit_submitted",
    "orbit_delivered",
    "trace",
)


class RequestLog:
    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute(
            "PRAGMA journal_mode=WAL" if self.path != ":memory:" else "PRAGMA foreign_keys=ON"
        )
        self._db.execute(_SCHEMA)

    def start(
        self, request_id: str, created_unix: float, key_id: str | None, model: str, stream: bool
    ) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO requests (id, created_unix, key_id, model, stream, status) "
                "VALUES (?, ?, ?, ?, ?, 'running')",
                (request_id, created_unix, key_id, model, int(stream)),
            )

    def finish(self, request_id: str, **fields: Any) -> None:
        """Set the outcome: status, error, token counts, wall times, trace (a dict)."""
        unknown = set(fields) - set(_COLUMNS)
        if unknown:
            raise KeyError(f"unknown request log columns: {sorted(unknown)}")
        if isinstance(fields.get("trace"), dict):
            fields["trace"] = json.dumps(fields["trace"], sort_keys=True)
        names = sorted(fields)
        with self._lock:
            self._db.execute(
                f"UPDATE requests SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?",
                [fields[n] for n in names] + [request_id],
            )

    def planned(self, request_id: str, trace: dict[str, Any]) -> None:
        """The planned trip of a request still running (the dashboard draws it)."""
        self.finish(request_id, trace=trace)

    def get(self, request_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM requests WHERE id = ?", (request_id,)
            ).fetchone()
        return _row(row) if row else None

    def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM requests ORDER BY created_unix DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [_row(r) for r in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM requests").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _row(row: tuple[Any, ...]) -> dict[str, Any]:
    out = dict(zip(_COLUMNS, row, strict=True))
    out["stream"] = bool(out["stream"])
    out["trace"] = json.loads(out["trace"]) if out["trace"] else None
    return out
