"""The operators' command history: every telecommand mission control sent, and its state.

States, in order: ``queued`` (held on the ground for the contact that carries it up),
``sent`` (its planned arrival on board has passed: on its way or on board, not yet
verified), then what the satellite itself reported in its housekeeping for the command's
id (``key id:sequence number``): ``accepted`` (authenticated), ``applied`` (acted on), or
``rejected`` / ``failed`` with the reason. A command is verified only by what comes down
from the satellite, never assumed.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from starcompute.times import format_utc, parse_utc

FINAL = ("applied", "rejected", "failed")


class CommandLog:
    """Commands sent and their verification (SQLite; ``:memory:`` by default)."""

    def __init__(self, path: Path | str = ":memory:") -> None:
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS commands (id INTEGER PRIMARY KEY, command_id TEXT, "
            "satellite TEXT, kind TEXT, args TEXT, sent TEXT, arrives TEXT, state TEXT, "
            "reason TEXT, verified TEXT)"
        )

    def add(
        self,
        satellite: str,
        kind: str,
        args: dict[str, Any],
        command_id: str | None,
        sent: np.datetime64,
        arrives: np.datetime64,
        state: str = "queued",
        reason: str = "",
    ) -> dict[str, Any]:
        cur = self.db.execute(
            "INSERT INTO commands (command_id, satellite, kind, args, sent, arrives, state, "
            "reason, verified) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                command_id,
                satellite,
                kind,
                json.dumps(args),
                format_utc(sent),
                format_utc(arrives),
                state,
                reason,
                format_utc(sent) if state != "queued" else None,
            ),
        )
        return {"history_id": cur.lastrowid, "command_id": command_id}

    def verify(self, satellite: str, outcomes: list[dict[str, Any]], at: np.datetime64) -> int:
        """Apply the outcomes a satellite reported (its housekeeping's
        ``commands.recent``); returns how many commands changed state. Only commands not
        yet in a final state move, so a replayed copy refused on board does not undo the
        original's ``applied``."""
        changed = 0
        for outcome in outcomes:
            ident, state = outcome.get("id"), outcome.get("outcome")
            if not ident or state not in ("accepted", *FINAL):
                continue
            placeholders = ", ".join("?" for _ in FINAL)
            cur = self.db.execute(
                "UPDATE commands SET state = ?, reason = ?, verified = ? WHERE satellite = ? "
                f"AND command_id = ? AND state != ? AND state NOT IN ({placeholders})",
                (state, outcome.get("reason", ""), format_utc(at), satellite, ident, state, *FINAL),
            )
            changed += cur.rowcount
        return changed

    def recent(self, now: np.datetime64, limit: int = 50) -> list[dict[str, Any]]:
        """The last ``limit`` commands, newest first, each with its state at ``now``."""
        rows = self.db.execute(
            "SELECT id, command_id, satellite, kind, args, sent, arrives, state, reason, "
            "verified FROM commands ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        out = []
        for hid, cid, sat, kind, args, sent, arrives, state, reason, verified in rows:
            if state == "queued" and parse_utc(arrives) <= now:
                state = "sent"
            out.append(
                {
                    "history_id": hid,
                    "command_id": cid,
                    "satellite": sat,
                    "command": kind,
                    "args": json.loads(args),
                    "sent": sent,
                    "arrives": arrives,
                    "state": state,
                    "reason": reason,
                    "verified": verified,
                }
            )
        return out
