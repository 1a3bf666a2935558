from __future__ import annotations

import shutil
import sqlite3
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from graphs.core.clock import FakeClock, parse_iso
from graphs.core.state import Actor
from tools.seed import build_seed
from tools.store import Store, ensure_store

STAFF: Actor = {"kind": "staff", "customer_id": None}
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def customer(customer_id: int | None) -> Actor:
    return {"kind": "customer", "customer_id": customer_id}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Store:
    return Store(tmp_path / "store.db", clock)


# --- the seed ---------------------------------------------------------------------------------


def test_seed_is_deterministic_for_the_same_now() -> None:
    first, second = build_seed(NOW), build_seed(NOW)
    assert first == second
    assert first.orders and first.items and first.shipments and first.policies


def test_seed_dates_follow_now_but_the_data_does_not_change() -> None:
    later = NOW + timedelta(days=10)
    a, b = build_seed(NOW), build_seed(later)
    assert [o.id for o in a.orders] == [o.id for o in b.orders]
    assert [o.status for o in a.orders] == [o.status for o in b.orders]
    assert [s.tracking_number for s in a.shipments] == [s.tracking_number for s in b.shipments]
    for old, new in zip(a.orders, b.orders, strict=True):
        assert new.placed_at - old.placed_at == timedelta(days=10)


def test_seed_orders_are_numbered_from_1001_with_every_status() -> None:
    seed = build_seed(NOW)
    ids = [o.id for o in seed.orders]
    assert len(ids) >= 50
    assert len(set(ids)) == len(ids)
    assert min(ids) == 1001
    assert sorted(ids) == list(range(1001, 1001 + len(ids)))
    statuses = {o.status for o in seed.orders}
    assert {"paid", "shipped", "delivered", "cancelled", "partially_refunded"} <= statuses
    customers = {c.id for c in seed.customers}
    assert all(o.customer_id in customers for o in seed.orders)
    for order in seed.orders:
        assert order.placed_at.tzinfo is not None
        assert order.placed_at < NOW
        if order.status == "cancelled":
            assert order.paid_cents == 0
        else:
            assert order.paid_cents == order.total_cents > 0


def test_seed_items_make_up_each_order_total() -> None:
    seed = build_seed(NOW)
    per_order: Counter[int] = Counter()
    for item in seed.items:
        assert item.quantity >= 1 and item.unit_cents > 0
        per_order[item.order_id] += item.quantity * item.unit_cents
    for order in seed.orders:
        assert per_order[order.id] == order.total_cents, order.id


def test_seed_shipments_have_unique_tracking_numbers() -> None:
    seed = build_seed(NOW)
    assert seed.shipments
    numbers = [s.tracking_number for s in seed.shipments]
    assert all(numbers) and len(set(numbers)) == len(numbers)
    by_id = {o.id: o for o in seed.orders}
    for shipment in seed.shipments:
        assert by_id[shipment.order_id].status in ("shipped", "delivered", "partially_refunded")
        assert shipment.carrier_status in ("label_created", "in_transit", "out_for_delivery",
                                           "delivered", "exception")
    shipped = {s.order_id for s in seed.shipments}
    assert all(o.id in shipped for o in seed.orders if o.status == "shipped")


def test_seed_has_a_superseded_policy_and_one_in_effect() -> None:
    policies = build_seed(NOW).policies
    assert len(policies) >= 2
    superseded = [p for p in policies if p.effective_to is not None and p.effective_to < NOW]
    assert superseded
    current = [p for p in policies if p.effective_from <= NOW
               and (p.effective_to is None or NOW < p.effective_to)]
    assert len(current) == 1
    for p in policies:
        assert p.effective_to is None or p.effective_from < p.effective_to
        assert p.return_window_days > 0 and p.text


def test_seed_refunds_belong_to_partially_refunded_orders() -> None:
    seed = build_seed(NOW)
    by_id = {o.id: o for o in seed.orders}
    assert seed.refunds
    for refund in seed.refunds:
        order = by_id[refund.order_id]
        assert order.status == "partially_refunded"
        assert 0 < refund.amount_cents < order.paid_cents
    assert [(r.order_id, r.amount_cents) for r in seed.refunds if r.order_id == 1007] == [
        (1007, 2000)]


# --- Store scoping ------------------------------------------------------------------------------


async def test_staff_sees_any_order(store: Store) -> None:
    seed = build_seed(NOW)
    for row in seed.orders[:: 7]:
        order = await store.order(row.id, actor=STAFF)
        assert order is not None
        assert (order.id, order.customer_id, order.status) == (row.id, row.customer_id,
                                                               row.status)
        assert order.total_cents == row.total_cents
        assert sum(i.quantity * i.unit_cents for i in order.items) == order.total_cents
    assert await store.order(99999, actor=STAFF) is None


async def test_customer_sees_own_order_only(store: Store) -> None:
    own = await store.order(1042, actor=STAFF)
    assert own is not None
    owner = own.customer_id
    mine = await store.order(1042, actor=customer(owner))
    assert mine == own
    other = owner % 20 + 1
    assert other != owner
    hidden = await store.order(1042, actor=customer(other))
    missing = await store.order(99999, actor=customer(other))
    assert hidden is None
    assert hidden == missing
    assert await store.order(1042, actor=customer(None)) is None


async def test_customer_shipment_scoping(store: Store) -> None:
    shipment = await store.shipment(1042, actor=STAFF)
    assert shipment is not None and shipment.tracking_number
    order = await store.order(1042, actor=STAFF)
    assert order is not None
    assert await store.shipment(1042, actor=customer(order.customer_id)) == shipment
    stranger = order.customer_id % 20 + 1
    hidden = await store.shipment(1042, actor=customer(stranger))
    missing = await store.shipment(99999, actor=customer(stranger))
    assert hidden is None and missing is None
    # an order without a shipment has none, even for staff
    cancelled = next(o for o in build_seed(NOW).orders if o.status == "cancelled")
    assert await store.shipment(cancelled.id, actor=STAFF) is None


async def test_customer_orders_lists_only_theirs(store: Store) -> None:
    seed = build_seed(NOW)
    owner = next(o.customer_id for o in seed.orders if o.id == 1042)
    orders = await store.customer_orders(owner)
    assert 1042 in orders
    assert sorted(orders) == sorted(o.id for o in seed.orders if o.customer_id == owner)


async def test_policy_at_now_and_100_days_ago(store: Store, clock: FakeClock) -> None:
    now = clock.now()
    current = await store.policy_at(now)
    past = await store.policy_at(now - timedelta(days=100))
    assert current is not None and past is not None
    assert current.version == "v2"
    assert past.version == "v1"
    assert past.effective_to is not None and past.effective_to <= now
    assert current.effective_from <= now
    assert await store.policy_at(now - timedelta(days=10000)) is None
    policies = await store.policies()
    assert [p.effective_from for p in policies] == sorted(p.effective_from for p in policies)


# --- ensure_store -------------------------------------------------------------------------------


def _seeded_at(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("SELECT value FROM meta WHERE key = 'seeded_at'").fetchone()[0])
    finally:
        conn.close()


def test_ensure_store_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "store.db"
    clock = FakeClock(NOW)
    ensure_store(path, clock)
    assert path.exists()
    before = path.read_bytes()
    clock.advance(86400)
    ensure_store(path, clock)
    ensure_store(path, clock)
    assert path.read_bytes() == before
    assert parse_iso(_seeded_at(path)) == NOW
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


async def test_ensure_store_keeps_an_existing_file(tmp_path: Path) -> None:
    original = tmp_path / "a" / "store.db"
    ensure_store(original, FakeClock(NOW))
    # Another process created this file: this process has never ensured the new path.
    copy = tmp_path / "b" / "store.db"
    copy.parent.mkdir()
    shutil.copyfile(original, copy)
    before = copy.read_bytes()
    later = FakeClock(NOW + timedelta(days=30))
    ensure_store(copy, later)
    assert copy.read_bytes() == before
    assert parse_iso(_seeded_at(copy)) == NOW
    order = await Store(copy, later).order(1001, actor=STAFF)
    assert order is not None and order.id == 1001
