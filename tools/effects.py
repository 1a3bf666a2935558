"""The effects journal: a durable note of every side effect, proposed or attempted, first.

A process can die between sending a payment and recording its answer; the checkpoint then
shows the step as not done, and the resumed run would simply try again. The journal (SQLite
in WAL mode under INTERLOCK_HOME, committed before the request goes out) tells the retry that
an earlier attempt may have landed, so it asks the payments service first
(`GET /v1/refunds?order_id=`) and records what it learned, then retries with the same
idempotency key, which can never pay twice.

It is also the ledger that cumulative limits are counted on: every effect an approval gate
lets through or puts before a human is noted (`propose`) with its subject (the order), its
principal (the customer) and its impact (the amount), in the same transaction that reads what
is already exposed, so two requests racing each other cannot both slip under a limit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphs.core.clock import Clock, iso, parse_iso
from tools.recording import Recorder
from tools.sql import Connection, Database, open_database

if TYPE_CHECKING:
    from tools.governor import CallContext

__all__ = ["SETTLED_NOTHING", "EffectJournal", "Exposure", "Proposal"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS effects (
    key TEXT PRIMARY KEY, dependency TEXT NOT NULL, thread_id TEXT, step_id TEXT,
    request TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, first_attempt_at TEXT,
    last_attempt_at TEXT, outcome TEXT, outcome_at TEXT, result TEXT);
"""
# Columns added for proposals and cumulative limits; a journal written before them gains them.
_ADDED = {"effect_id": "TEXT", "subject": "TEXT", "principal": "TEXT",
          "impact_cents": "INTEGER", "proposed_at": "TEXT", "decision": "TEXT",
          # How the last attempt ended (`finish`; cleared when the next one begins), and, for
          # the attempt under way, how the one before it ended: kept when a proposal is
          # decided again (which clears `outcome`). A retry after an attempt that moved
          # nothing has nothing to ask about; after one that never finished (a run that
          # died), it has.
          "last_outcome": "TEXT", "prior_outcome": "TEXT"}
_INDEXES = ("CREATE INDEX IF NOT EXISTS effects_by_subject ON effects (subject)",
            "CREATE INDEX IF NOT EXISTS effects_by_principal ON effects (principal)",
            "CREATE INDEX IF NOT EXISTS effects_by_effect ON effects (effect_id)")
SETTLED_NOTHING = ("failed", "rejected", "refused")
"""Outcomes that moved nothing: they do not count against a limit, and an attempt after one
has nothing to settle first."""
_COLUMNS = ("key, dependency, thread_id, step_id, request, attempts, outcome, result, "
            "effect_id, subject, principal, impact_cents, decision, "
            "COALESCE(proposed_at, first_attempt_at), prior_outcome")


@dataclass(frozen=True, slots=True, kw_only=True)
class Proposal:
    """A side effect an approval gate is deciding on, as the journal notes it."""

    key: str
    """The effect's idempotency key."""
    dependency: str
    """The dependency that will make it (payments)."""
    effect_id: str
    """The request and step it belongs to, whatever its terms (one per plan step)."""
    subject: str
    """What it acts on (`order:1012`); cumulative limits are counted per subject."""
    principal: str
    """Whose it is (`customer:9`); and per principal."""
    impact_cents: int
    """How much it moves."""
    request: dict[str, Any] = field(default_factory=dict)
    """Its terms, as they will be sent."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Exposure:
    """What other effects already moved, or may move, on a proposal's subject and principal."""

    subject_cents: int = 0
    """Impact of the subject's other effects in the window (proposed, pending or made)."""
    principal_cents: int = 0
    """Impact of the principal's other effects in the window."""
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    """The subject's other effects of the same impact in the duplicate window."""
    known_results: list[str] = field(default_factory=list)
    """Result ids (refund ids) of the subject's effects this journal knows were made."""


class EffectJournal:
    """Side effects by idempotency key, durable across crashes.

    Kept in SQLite under INTERLOCK_HOME, or in Postgres (`database_url`), shared by replicas.
    """

    def __init__(self, path: Path, clock: Clock | None = None,
                 recorder: Recorder | None = None, *, database_url: str | None = None) -> None:
        self.path = path
        self._clock = clock or Clock()
        self._recorder = recorder or Recorder(self._clock)
        self._recorder.learn((Exposure,))
        self._db: Database = open_database(database_url, path, table="effects", schema=_SCHEMA,
                                           added=_ADDED, indexes=_INDEXES)

    @property
    def where(self) -> str:
        """The database it is kept in (a file, or a Postgres host and database)."""
        return self._db.name

    def close(self) -> None:
        """Let go of its connections."""
        self._db.close()

    def _transaction(self, work: Callable[[Connection], Any]) -> Any:
        return self._db.transaction(work)

    def _begin(self, key: str, dependency: str, thread_id: str | None, step_id: str | None,
               request: dict[str, Any]) -> int:
        now = iso(self._clock.now())

        def work(conn: Connection) -> int:
            row = conn.execute("SELECT attempts FROM effects WHERE key = ?", (key,)).fetchone()
            if row is None:
                conn.execute("INSERT INTO effects (key, dependency, thread_id, step_id, request, "
                             "attempts, first_attempt_at, last_attempt_at) "
                             "VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
                             (key, dependency, thread_id, step_id,
                              json.dumps(request, sort_keys=True), now, now))
                return 0
            # The first attempt's terms are what is sent (a proposal noted them before).
            conn.execute("UPDATE effects SET attempts = attempts + 1, last_attempt_at = ?, "
                         "prior_outcome = last_outcome, last_outcome = NULL, "
                         "first_attempt_at = COALESCE(first_attempt_at, ?), thread_id = "
                         "COALESCE(thread_id, ?), step_id = COALESCE(step_id, ?), request = "
                         "CASE WHEN attempts = 0 THEN ? ELSE request END WHERE key = ?",
                         (now, now, thread_id, step_id, json.dumps(request, sort_keys=True),
                          key))
            return int(row[0])

        earlier: int = self._transaction(work)
        return earlier

    async def begin(self, key: str, *, dependency: str, request: dict[str, Any],
                    ctx: CallContext | None = None) -> int:
        """Note an attempt before it is made; return how many were noted before it.

        The answer is recorded in the lineage (a replay is served the same answer).
        """
        thread_id = ctx.thread_id if ctx else None
        step_id = ctx.step_id if ctx else None
        return await self._recorder.call(ctx, "effects", "begin", {"key": key}, lambda: (
            asyncio.to_thread(self._begin, key, dependency, thread_id, step_id, request)))

    def _exposure(self, conn: Connection, proposal: Proposal, now: datetime,
                  window_s: float, duplicate_window_s: float) -> Exposure:
        since = now - timedelta(seconds=window_s)
        dup_since = now - timedelta(seconds=duplicate_window_s)
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM effects WHERE key != ? AND (subject = ? OR principal = ?) "
            f"AND (outcome IS NULL OR outcome NOT IN ({','.join('?' * len(SETTLED_NOTHING))}))",
            (proposal.key, proposal.subject, proposal.principal, *SETTLED_NOTHING)).fetchall()
        subject = principal = 0
        duplicates: list[dict[str, Any]] = []
        known: list[str] = []
        for row in rows:
            at, impact = (parse_iso(row[13]) if row[13] else now), int(row[11] or 0)
            same_subject = row[9] == proposal.subject
            if same_subject and row[7] and (ref := json.loads(row[7]).get("refund_id")):
                known.append(str(ref))
            if at < since:
                continue
            subject += impact if same_subject else 0
            principal += impact if row[10] == proposal.principal else 0
            if (same_subject and duplicate_window_s > 0 and impact == proposal.impact_cents
                    and at >= dup_since):
                duplicates.append({"key": row[0], "at": iso(at), "outcome": row[6],
                                   "step_id": row[3]})
        return Exposure(subject_cents=subject, principal_cents=principal,
                        duplicates=duplicates, known_results=known)

    def _propose(self, proposal: Proposal, window_s: float, duplicate_window_s: float,
                 decide: Callable[[Exposure], str]) -> tuple[Exposure, str]:
        now = self._clock.now()

        def work(conn: Connection) -> tuple[Exposure, str]:
            exposure = self._exposure(conn, proposal, now, window_s, duplicate_window_s)
            row = conn.execute("SELECT decision, outcome FROM effects WHERE key = ?",
                               (proposal.key,)).fetchone()
            if row is not None and row[0] and row[1] not in SETTLED_NOTHING:
                return exposure, str(row[0])  # decided before (a resumed or re-run gate)
            # New, or proposed before and settled with nothing moved (failed, rejected,
            # refused): decided again on what is exposed now, and counted again from now.
            decision = decide(exposure)
            if row is None:
                conn.execute(
                    "INSERT INTO effects (key, dependency, request, attempts, effect_id, subject,"
                    " principal, impact_cents, proposed_at, decision) "
                    "VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?, ?)",
                    (proposal.key, proposal.dependency,
                     json.dumps(proposal.request, sort_keys=True), proposal.effect_id,
                     proposal.subject, proposal.principal, proposal.impact_cents, iso(now),
                     decision))
            else:  # proposed again, or attempted by an older version before any proposal
                conn.execute("UPDATE effects SET effect_id = COALESCE(effect_id, ?), "
                             "subject = ?, principal = ?, impact_cents = ?, proposed_at = ?, "
                             "decision = ?, outcome = NULL, outcome_at = NULL WHERE key = ?",
                             (proposal.effect_id, proposal.subject, proposal.principal,
                              proposal.impact_cents, iso(now), decision, proposal.key))
            return exposure, decision

        result: tuple[Exposure, str] = self._transaction(work)
        return result

    async def propose(self, proposal: Proposal, *, window_s: float, duplicate_window_s: float,
                      decide: Callable[[Exposure], str], ctx: CallContext | None = None
                      ) -> tuple[Exposure, str]:
        """Note a proposal and decide on it in one transaction; return the exposure and decision.

        `decide` sees what the proposal's subject and principal already have exposed in the
        window (this proposal excluded) and returns a decision label; it runs while the journal
        is locked, so a concurrent proposal sees this one. A proposal decided before keeps its
        decision (a gate that runs again after a crash or an approval decides the same way).
        The answer is recorded in the lineage (a replay is served the same answer).
        """
        exposure, decision = await self._recorder.call(
            ctx, "effects", "propose", {"key": proposal.key}, lambda: asyncio.to_thread(
                self._propose, proposal, window_s, duplicate_window_s, decide))
        return exposure, str(decision)

    def _row(self, where: str, value: str) -> dict[str, Any] | None:
        if not self._db.ready():
            return None
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM effects WHERE {where} = ? ORDER BY attempts > 0 DESC, "
            f"COALESCE(last_attempt_at, proposed_at) DESC LIMIT 1", (value,))
        if not rows:
            return None
        row = rows[0]
        return {"key": row[0], "request": json.loads(row[4]), "attempts": int(row[5]),
                "outcome": row[6], "result": json.loads(row[7]) if row[7] else None,
                "effect_id": row[8], "decision": row[12], "prior_outcome": row[14]}

    def _attempted(self, key: str) -> dict[str, Any] | None:
        row = self._row("key", key)
        if row is None or not row["attempts"]:
            return None
        request: dict[str, Any] = row["request"]
        return request

    async def attempted(self, key: str, ctx: CallContext | None = None
                        ) -> dict[str, Any] | None:
        """What an earlier attempt under this key sent, if one was made (it may have landed)."""
        return await self._recorder.call(ctx, "effects", "attempted", {"key": key},
                                         lambda: asyncio.to_thread(self._attempted, key))

    async def effect(self, effect_id: str, ctx: CallContext | None = None
                     ) -> dict[str, Any] | None:
        """The latest effect noted for a step (attempted ones first): key, terms, outcome."""
        return await self._recorder.call(ctx, "effects", "effect", {"effect_id": effect_id},
                                         lambda: asyncio.to_thread(self._row, "effect_id",
                                                                   effect_id))

    async def entry(self, key: str, ctx: CallContext | None = None) -> dict[str, Any] | None:
        """The effect noted under `key` (key, terms, attempts, outcome, result, decision)."""
        return await self._recorder.call(ctx, "effects", "entry", {"key": key},
                                         lambda: asyncio.to_thread(self._row, "key", key))

    def _finish(self, key: str, outcome: str, result: dict[str, Any] | None) -> None:
        # How an attempt ended; a gate's refusal or a human's rejection is not an attempt.
        attempted = outcome not in ("rejected", "refused")
        self._db.execute("UPDATE effects SET outcome = ?, last_outcome = CASE WHEN ? "
                         "THEN ? ELSE last_outcome END, outcome_at = ?, result = ? "
                         "WHERE key = ?",
                         (outcome, attempted, outcome, iso(self._clock.now()),
                          json.dumps(result) if result else None, key))

    async def finish(self, key: str, outcome: str, result: dict[str, Any] | None = None
                     ) -> None:
        """Note how the effect ended: executed, pending (unknown), failed, rejected or refused."""
        if self._recorder.writes:  # a replay writes nothing
            await asyncio.to_thread(self._finish, key, outcome, result)

    def entries(self) -> list[dict[str, Any]]:
        """Every noted effect, oldest first (for tests and audits)."""
        if not self._db.ready():
            return []
        names, rows = self._db.columns(
            "SELECT * FROM effects ORDER BY COALESCE(proposed_at, first_attempt_at)")
        return [dict(zip(names, row, strict=True)) for row in rows]
