"""The payments API, simulated: refunds with `Idempotency-Key`, kept in SQLite across processes.

- `POST /v1/refunds` (header `Idempotency-Key` required, body `order_id, amount_cents, currency,
  reason`): 201 with a new refund; the same key and body again: 200 with the same refund, never a
  second one; the same key with another body: 409. A refund above what is left of the charge: 422.
- `GET /v1/refunds?order_id=N`: 200 `{"refunds": [...]}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import httpx

from graphs.core.clock import Clock, iso
from tools.policy import FaultSpec
from tools.simulators.faults import FaultInjector, SimulatorStats
from tools.store import ensure_store

__all__ = ["PaymentsSimulator"]

_SCHEMA = """
CREATE TABLE charges (order_id INTEGER PRIMARY KEY, captured_cents INTEGER NOT NULL,
    currency TEXT NOT NULL);
CREATE TABLE refunds (refund_id TEXT PRIMARY KEY, idempotency_key TEXT UNIQUE, body_hash TEXT,
    order_id INTEGER NOT NULL, amount_cents INTEGER NOT NULL, currency TEXT NOT NULL,
    reason TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE INDEX refunds_by_order ON refunds (order_id);
"""
_FIELDS = ("refund_id", "order_id", "amount_cents", "currency", "status", "created_at")
_create_lock = threading.Lock()


class PaymentsSimulator:
    """A payments service that honours `Idempotency-Key` exactly as the contract says."""

    name = "payments"

    def __init__(self, path: Path, store_path: Path, *, faults: FaultSpec | None = None,
                 clock: Clock | None = None) -> None:
        self.path = path
        self._store_path = store_path
        self._clock = clock or Clock()
        self.faults = FaultInjector(faults, self._clock)
        self.stats = SimulatorStats()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        """Handle one request."""
        self.stats.calls += 1
        self.stats.in_flight += 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        try:
            response = await self._handle(request)
        finally:
            self.stats.in_flight -= 1
        self.stats.statuses[response.status_code] += 1
        return response

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        if (faulted := await self.faults.before()) is not None:
            return faulted
        path = request.url.path
        if path != "/v1/refunds":
            return httpx.Response(404, json={"error": "not_found"})
        if request.method == "GET":
            raw = request.url.params.get("order_id", "")
            if not raw.isdigit():
                return httpx.Response(400, json={"error": "invalid_request",
                                                 "detail": "order_id must be an integer"})
            refunds = await asyncio.to_thread(self.refunds, int(raw))
            return httpx.Response(200, json={"refunds": refunds})
        if request.method != "POST":
            return httpx.Response(405, json={"error": "method_not_allowed"})
        key = request.headers.get("Idempotency-Key", "").strip()
        if not key or len(key) > 255:
            return httpx.Response(400, json={"error": "idempotency_key_required"})
        try:
            body = _validate(json.loads(request.content or b"null"))
        except (ValueError, TypeError) as exc:
            return httpx.Response(400, json={"error": "invalid_request", "detail": str(exc)})
        status, payload = await asyncio.to_thread(self._create, key, body)
        if status == 201 and self.faults.lose_answer():
            return httpx.Response(504, json={"error": "gateway_timeout"})
        return httpx.Response(status, json=payload)

    def _connect(self) -> sqlite3.Connection:
        self._ensure()
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        return conn

    def _ensure(self) -> None:
        if self.path.exists():
            return
        with _create_lock:
            if self.path.exists():
                return
            ensure_store(self._store_path, self._clock)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            src = sqlite3.connect(f"file:{self._store_path.resolve()}?mode=ro", uri=True)
            conn = sqlite3.connect(tmp)
            try:
                conn.executescript(_SCHEMA)
                conn.executemany("INSERT INTO charges VALUES (?, ?, ?)",
                                 src.execute("SELECT id, paid_cents, currency FROM orders"))
                conn.executemany(
                    "INSERT INTO refunds VALUES (?, NULL, NULL, ?, ?, ?, ?, 'succeeded', ?)",
                    src.execute("SELECT refund_id, order_id, amount_cents, currency, reason, "
                                "created_at FROM seed_refunds"))
                conn.commit()
                conn.execute("PRAGMA journal_mode=WAL")
            finally:
                conn.close()
                src.close()
            with contextlib.suppress(FileExistsError):
                os.link(tmp, self.path)  # the first creator wins, atomically
            tmp.unlink(missing_ok=True)

    def refunds(self, order_id: int) -> list[dict[str, Any]]:
        """Every refund of one order, oldest first (also what `GET /v1/refunds` returns)."""
        conn = self._connect()
        try:
            rows = conn.execute(
                "SELECT * FROM refunds WHERE order_id = ? ORDER BY created_at, refund_id",
                (order_id,)).fetchall()
        finally:
            conn.close()
        return [{k: row[k] for k in _FIELDS} for row in rows]

    def all_refunds(self) -> list[dict[str, Any]]:
        """Every refund made through the API (not the seeded ones), with its idempotency key."""
        conn = self._connect()
        try:
            rows = conn.execute("SELECT * FROM refunds WHERE idempotency_key IS NOT NULL "
                                "ORDER BY created_at, refund_id").fetchall()
        finally:
            conn.close()
        return [{**{k: row[k] for k in _FIELDS}, "idempotency_key": row["idempotency_key"]}
                for row in rows]

    def _create(self, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        body_hash = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            existing = conn.execute("SELECT * FROM refunds WHERE idempotency_key = ?",
                                    (key,)).fetchone()
            if existing is not None:
                conn.execute("ROLLBACK")
                if existing["body_hash"] != body_hash:
                    return 409, {"error": "idempotency_key_reused"}
                return 200, {k: existing[k] for k in _FIELDS}
            charge = conn.execute("SELECT captured_cents, currency FROM charges WHERE "
                                  "order_id = ?", (body["order_id"],)).fetchone()
            if charge is None:
                conn.execute("ROLLBACK")
                return 404, {"error": "order_not_found"}
            refunded = conn.execute("SELECT COALESCE(SUM(amount_cents), 0) FROM refunds WHERE "
                                    "order_id = ?", (body["order_id"],)).fetchone()[0]
            left = charge["captured_cents"] - refunded
            if body["currency"] != charge["currency"] or body["amount_cents"] > left:
                conn.execute("ROLLBACK")
                return 422, {"error": "exceeds_refundable", "refundable_cents": max(0, left)}
            refund = {
                "refund_id": "rf_" + hashlib.sha256(key.encode()).hexdigest()[:16],
                "order_id": body["order_id"], "amount_cents": body["amount_cents"],
                "currency": body["currency"], "status": "succeeded",
                "created_at": iso(self._clock.now()),
            }
            conn.execute("INSERT INTO refunds VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (refund["refund_id"], key, body_hash, body["order_id"],
                          body["amount_cents"], body["currency"], body["reason"], "succeeded",
                          refund["created_at"]))
            conn.execute("COMMIT")
            return 201, refund
        finally:
            conn.close()


def _validate(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    order_id, amount, currency, reason = (body.get(k) for k in
                                          ("order_id", "amount_cents", "currency", "reason"))
    if type(order_id) is not int or order_id <= 0:
        raise ValueError("order_id must be a positive integer")
    if type(amount) is not int or amount <= 0:
        raise ValueError("amount_cents must be a positive integer")
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        raise ValueError("currency must be a three-letter code")
    if not isinstance(reason, str) or len(reason) > 500:
        raise ValueError("reason must be a string of at most 500 characters")
    return {"order_id": order_id, "amount_cents": amount, "currency": currency.upper(),
            "reason": reason}
