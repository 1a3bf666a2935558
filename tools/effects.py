"""The effects journal: a durable note of every side-effect attempt, written before it is made.

A process can die between sending a payment and recording its answer; the checkpoint then
shows the step as not done, and the resumed run would simply try again. The journal (SQLite
in WAL mode under INTERLOCK_HOME, committed before the request goes out) tells the retry that
an earlier attempt may have landed, so it asks the payments service first
(`GET /v1/refunds?order_id=`) and records what it learned, then retries with the same
idempotency key, which can never pay twice.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.clock import Clock, iso
from tools.recording import recorded

if TYPE_CHECKING:
    from tools.governor import CallContext

__all__ = ["EffectJournal"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS effects (
    key TEXT PRIMARY KEY, dependency TEXT NOT NULL, thread_id TEXT, step_id TEXT,
    request TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, first_attempt_at TEXT,
    last_attempt_at TEXT, outcome TEXT, outcome_at TEXT, result TEXT);
"""


class EffectJournal:
    """Side-effect attempts by idempotency key, durable across crashes."""

    def __init__(self, path: Path, clock: Clock | None = None) -> None:
        self.path = path
        self._clock = clock or Clock()
        self._local = threading.local()

    def _connect(self) -> sqlite3.Connection:
        """The calling thread's connection (autocommit: a write is committed when it returns)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            self._local.conn = conn
        return conn

    def _begin(self, key: str, dependency: str, thread_id: str | None, step_id: str | None,
               request: dict[str, Any]) -> int:
        now = iso(self._clock.now())
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT attempts FROM effects WHERE key = ?", (key,)).fetchone()
            if row is None:
                conn.execute("INSERT INTO effects (key, dependency, thread_id, step_id, request, "
                             "attempts, first_attempt_at, last_attempt_at) "
                             "VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
                             (key, dependency, thread_id, step_id,
                              json.dumps(request, sort_keys=True), now, now))
                earlier = 0
            else:
                earlier = int(row[0])
                conn.execute("UPDATE effects SET attempts = attempts + 1, last_attempt_at = ? "
                             "WHERE key = ?", (now, key))
            conn.execute("COMMIT")
            return earlier
        except BaseException:
            if conn.in_transaction:  # the connection is kept: leave it clean
                conn.execute("ROLLBACK")
            raise

    async def begin(self, key: str, *, dependency: str, request: dict[str, Any],
                    ctx: CallContext | None = None) -> int:
        """Note an attempt before it is made; return how many were noted before it.

        The answer is recorded in the lineage (a replay is served the same answer).
        """
        thread_id = ctx.thread_id if ctx else None
        step_id = ctx.step_id if ctx else None
        return await recorded(ctx, self._clock, "effects", "begin", {"key": key},
                              asyncio.to_thread(self._begin, key, dependency, thread_id,
                                                step_id, request))

    def _attempted(self, key: str) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        row = self._connect().execute("SELECT request, attempts FROM effects WHERE key = ?",
                                      (key,)).fetchone()
        if row is None or not row[1]:
            return None
        request: dict[str, Any] = json.loads(row[0])
        return request

    async def attempted(self, key: str, ctx: CallContext | None = None
                        ) -> dict[str, Any] | None:
        """What an earlier attempt under this key sent, if one was made (it may have landed)."""
        return await recorded(ctx, self._clock, "effects", "attempted", {"key": key},
                              asyncio.to_thread(self._attempted, key))

    def _finish(self, key: str, outcome: str, result: dict[str, Any] | None) -> None:
        self._connect().execute("UPDATE effects SET outcome = ?, outcome_at = ?, result = ? "
                                "WHERE key = ?", (outcome, iso(self._clock.now()),
                                                  json.dumps(result) if result else None, key))

    async def finish(self, key: str, outcome: str, result: dict[str, Any] | None = None
                     ) -> None:
        """Note how the effect ended: executed, pending (unknown) or failed."""
        await asyncio.to_thread(self._finish, key, outcome, result)

    def entries(self) -> list[dict[str, Any]]:
        """Every noted effect, oldest first (for tests and audits)."""
        if not self.path.exists():
            return []
        cursor = self._connect().execute("SELECT * FROM effects ORDER BY first_attempt_at")
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
