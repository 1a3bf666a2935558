"""The store database (SQLite under INTERLOCK_HOME): created and seeded on first use, read scoped.

Every read that touches an order takes the actor: a customer only ever sees their own orders,
and an order that is not theirs looks exactly like one that does not exist.
Queries run in worker threads (`asyncio.to_thread`) so the event loop never blocks on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from graphs.core.clock import Clock, iso, parse_iso
from graphs.core.state import Actor
from tools.recording import Recorder
from tools.seed import SeedData, build_seed

if TYPE_CHECKING:
    from tools.governor import CallContext

__all__ = ["STORE_TYPES", "Item", "Order", "Policy", "Shipment", "Store", "ensure_store"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL,
    phone TEXT NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers,
    status TEXT NOT NULL, placed_at TEXT NOT NULL, delivered_at TEXT, total_cents INTEGER NOT NULL,
    paid_cents INTEGER NOT NULL, currency TEXT NOT NULL);
CREATE TABLE items (order_id INTEGER NOT NULL REFERENCES orders, sku TEXT NOT NULL,
    name TEXT NOT NULL, quantity INTEGER NOT NULL, unit_cents INTEGER NOT NULL,
    PRIMARY KEY (order_id, sku));
CREATE TABLE shipments (order_id INTEGER PRIMARY KEY REFERENCES orders,
    tracking_number TEXT NOT NULL UNIQUE, carrier TEXT NOT NULL, shipped_at TEXT NOT NULL,
    sim_status TEXT NOT NULL, sim_eta TEXT, sim_last_event TEXT NOT NULL);
CREATE TABLE policies (version TEXT PRIMARY KEY, effective_from TEXT NOT NULL,
    effective_to TEXT, return_window_days INTEGER NOT NULL, text TEXT NOT NULL);
CREATE TABLE seed_refunds (refund_id TEXT PRIMARY KEY, order_id INTEGER NOT NULL,
    amount_cents INTEGER NOT NULL, currency TEXT NOT NULL, reason TEXT NOT NULL,
    created_at TEXT NOT NULL);
CREATE INDEX orders_by_customer ON orders (customer_id);
"""
"""The `sim_*` columns and `seed_refunds` are what the simulated carrier and payments service
start from; the store's own API never returns them."""

_ensured: set[Path] = set()
_ensure_lock = threading.Lock()


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    """One line of an order."""

    sku: str
    """Stock keeping unit."""
    name: str
    """Product name."""
    quantity: int
    """How many."""
    unit_cents: int
    """Price of one, in cents."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Order:
    """An order as the store knows it."""

    id: int
    """Order number (1001 upward)."""
    customer_id: int
    """The customer who placed it."""
    status: str
    """paid, shipped, delivered, cancelled or partially_refunded."""
    placed_at: datetime
    """When it was placed."""
    delivered_at: datetime | None
    """When it was delivered, if it was."""
    total_cents: int
    """Order total."""
    paid_cents: int
    """What was charged (0 for cancelled orders)."""
    currency: str
    """ISO currency code."""
    items: tuple[Item, ...]
    """The order's lines."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Shipment:
    """A shipment as the store knows it (live status comes from the carrier)."""

    order_id: int
    """The order shipped."""
    tracking_number: str
    """The carrier's tracking number."""
    carrier: str
    """Carrier name."""
    shipped_at: datetime
    """When it left the warehouse."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """One version of the refund policy."""

    version: str
    """Version name (v1, v2, ...)."""
    effective_from: datetime
    """First moment this version is in effect."""
    effective_to: datetime | None
    """First moment it is no longer in effect (None: open-ended)."""
    return_window_days: int
    """Days after delivery within which a refund is allowed."""
    text: str
    """The policy text."""

    def in_effect(self, moment: datetime) -> bool:
        """Whether this version is the one in effect at `moment`."""
        return self.effective_from <= moment and (self.effective_to is None
                                                  or moment < self.effective_to)


def ensure_store(path: Path, clock: Clock | None = None) -> None:
    """Create and seed the store database at `path` unless it exists (safe across processes)."""
    path = path.resolve()
    if path in _ensured:
        return
    with _ensure_lock:
        if not path.exists():
            now = (clock or Clock()).now().replace(second=0, microsecond=0)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            try:
                _write_seed(tmp, build_seed(now), now)
                # link() fails if the path exists: the first creator wins, atomically, and no
                # reader ever sees a half-seeded file.
                with contextlib.suppress(FileExistsError):
                    os.link(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        _ensured.add(path)


def _write_seed(path: Path, seed: SeedData, now: datetime) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.executescript(_SCHEMA)
        conn.execute("INSERT INTO meta VALUES ('seeded_at', ?)", (iso(now),))
        conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)",
                         [(c.id, c.name, c.email, c.phone) for c in seed.customers])
        conn.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(o.id, o.customer_id, o.status, iso(o.placed_at),
              iso(o.delivered_at) if o.delivered_at else None, o.total_cents, o.paid_cents,
              o.currency) for o in seed.orders])
        conn.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?)",
                         [(i.order_id, i.sku, i.name, i.quantity, i.unit_cents)
                          for i in seed.items])
        conn.executemany(
            "INSERT INTO shipments VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(s.order_id, s.tracking_number, s.carrier, iso(s.shipped_at), s.carrier_status,
              iso(s.eta) if s.eta else None, s.last_event) for s in seed.shipments])
        conn.executemany(
            "INSERT INTO policies VALUES (?, ?, ?, ?, ?)",
            [(p.version, iso(p.effective_from), iso(p.effective_to) if p.effective_to else None,
              p.return_window_days, p.text) for p in seed.policies])
        conn.executemany(
            "INSERT INTO seed_refunds VALUES (?, ?, ?, ?, ?, ?)",
            [(r.refund_id, r.order_id, r.amount_cents, r.currency, r.reason, iso(r.created_at))
             for r in seed.refunds])
        conn.commit()
    finally:
        conn.close()


class Store:
    """Read access to the store database, scoped by actor."""

    def __init__(self, path: Path, clock: Clock | None = None,
                 recorder: Recorder | None = None) -> None:
        self.path = path
        self._clock = clock or Clock()
        self._recorder = recorder or Recorder(self._clock)
        self._recorder.learn(STORE_TYPES)
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            ensure_store(self.path, self._clock)
            conn = sqlite3.connect(f"file:{self.path.resolve()}?mode=ro", uri=True)
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    def _rows(self, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
        return self._conn().execute(sql, params).fetchall()

    async def _query(self, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
        return await asyncio.to_thread(self._rows, sql, params)

    async def _scoped(self, action: str, sql: str, order_id: int, actor: Actor,
                      ctx: CallContext | None, build: Callable[[list[sqlite3.Row]], T]
                      ) -> T | None:
        """One order's rows as `actor` may see them, built into a record, and recorded."""

        async def read() -> T | None:
            rows = await self._query(sql, (order_id, *_scope(actor)))
            return build(rows) if rows else None

        return await self._recorder.call(ctx, "store", action,
                                         {"order_id": order_id, "actor": dict(actor)}, read)

    async def order(self, order_id: int, *, actor: Actor,
                    ctx: CallContext | None = None) -> Order | None:
        """The order, or None if it does not exist or `actor` may not see it."""
        return await self._scoped("order", _ORDER_SQL, order_id, actor, ctx, _order)

    async def shipment(self, order_id: int, *, actor: Actor,
                       ctx: CallContext | None = None) -> Shipment | None:
        """The order's shipment, or None if there is none or `actor` may not see the order."""
        return await self._scoped("shipment", _SHIPMENT_SQL, order_id, actor, ctx, _shipment)

    async def policies(self, ctx: CallContext | None = None) -> list[Policy]:
        """Every version of the refund policy, oldest first."""
        return await self._recorder.call(ctx, "store", "policies", {}, self._policies)

    async def _policies(self) -> list[Policy]:
        rows = await self._query("SELECT * FROM policies ORDER BY effective_from", ())
        return [Policy(version=r["version"], effective_from=parse_iso(r["effective_from"]),
                       effective_to=parse_iso(r["effective_to"]) if r["effective_to"] else None,
                       return_window_days=r["return_window_days"], text=r["text"])
                for r in rows]

    async def policy_at(self, moment: datetime, ctx: CallContext | None = None
                        ) -> Policy | None:
        """The policy version in effect at `moment`, if any."""
        return next((p for p in await self.policies(ctx) if p.in_effect(moment)), None)

    async def customer_orders(self, customer_id: int) -> list[int]:
        """Order numbers of one customer, newest first."""
        rows = await self._query(
            "SELECT id FROM orders WHERE customer_id = ? ORDER BY placed_at DESC", (customer_id,))
        return [r["id"] for r in rows]


STORE_TYPES: tuple[type, ...] = (Order, Item, Shipment, Policy)
"""What store reads return (a replay serves them from the record)."""

_ORDER_SQL = ("SELECT o.*, i.sku, i.name, i.quantity, i.unit_cents FROM orders o "
              "LEFT JOIN items i ON i.order_id = o.id WHERE o.id = ? AND (? IS NULL OR "
              "o.customer_id = ?) ORDER BY i.sku")
_SHIPMENT_SQL = ("SELECT s.order_id, s.tracking_number, s.carrier, s.shipped_at FROM shipments s "
                 "JOIN orders o ON o.id = s.order_id WHERE s.order_id = ? AND (? IS NULL OR "
                 "o.customer_id = ?)")


def _order(rows: list[sqlite3.Row]) -> Order:
    first = rows[0]
    items = tuple(Item(sku=r["sku"], name=r["name"], quantity=r["quantity"],
                       unit_cents=r["unit_cents"]) for r in rows if r["sku"] is not None)
    return Order(id=first["id"], customer_id=first["customer_id"], status=first["status"],
                 placed_at=parse_iso(first["placed_at"]),
                 delivered_at=parse_iso(first["delivered_at"]) if first["delivered_at"]
                 else None,
                 total_cents=first["total_cents"], paid_cents=first["paid_cents"],
                 currency=first["currency"], items=items)


def _shipment(rows: list[sqlite3.Row]) -> Shipment:
    r = rows[0]
    return Shipment(order_id=r["order_id"], tracking_number=r["tracking_number"],
                    carrier=r["carrier"], shipped_at=parse_iso(r["shipped_at"]))


def _scope(actor: Actor) -> tuple[int | None, int | None]:
    if actor["kind"] == "staff":
        return (None, None)
    # A customer without an id sees nothing: -1 matches no customer.
    customer = actor["customer_id"] if actor["customer_id"] is not None else -1
    return (customer, customer)
