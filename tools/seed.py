"""Deterministic reference data of the support desk: customers, orders, shipments, policies.

Dates are relative to the moment the store is seeded, so the same orders stay inside (or
outside) the return window whenever a fresh home is created. A few orders are pinned because
the README, the demo and the tests talk about them:

| order | customer | state | why |
|---|---|---|---|
| 1001 | 3 | delivered 3 days ago, 189.00 | a refund above the auto-approval limit |
| 1003 | 3 | delivered 20 days ago, 90.00 | inside v1's 30-day window, outside v2's 14 days |
| 1005 | 5 | cancelled | nothing to refund |
| 1007 | 7 | partially refunded (20.00 of 74.00) | refund limited to what is left |
| 1012 | 9 | delivered 2 days ago, 39.00 | a refund under the auto-approval limit |
| 1042 | 7 | shipped, in transit, 130.00 | "Where is my order 1042?" |
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = [
    "CustomerRow",
    "ItemRow",
    "OrderRow",
    "PolicyRow",
    "RefundRow",
    "SeedData",
    "ShipmentRow",
    "build_seed",
]

SEED = 20261125
FIRST_ORDER = 1001
ORDER_COUNT = 60
CUSTOMER_COUNT = 20

_FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia",
          "Tim", "Margaret", "John", "Leslie", "Shafi", "Niklaus", "Anita", "Dennis", "Katherine",
          "Vint", "Hedy"]
_LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson",
         "Perlman", "Berners", "Hamilton", "Backus", "Lamport", "Goldwasser", "Wirth", "Borg",
         "Ritchie", "Johnson", "Cerf", "Lamarr"]
_CATALOG = [
    ("SKU-KB-01", "Mechanical keyboard", 8900), ("SKU-MS-02", "Wireless mouse", 2900),
    ("SKU-HD-03", "Noise-cancelling headphones", 15900), ("SKU-CB-04", "USB-C cable", 1200),
    ("SKU-ST-05", "Laptop stand", 4500), ("SKU-WC-06", "Webcam", 6900),
    ("SKU-MN-07", "27-inch monitor", 27900), ("SKU-DK-08", "Docking station", 13900),
    ("SKU-LP-09", "Desk lamp", 3900), ("SKU-BG-10", "Laptop sleeve", 2500),
    ("SKU-KC-11", "Keycap set", 3000),
]
_CARRIERS = [("UPS", "1Z"), ("DHL", "JD"), ("FedEx", "FX")]


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerRow:
    """A customer of the store (their contact data is personal data)."""

    id: int
    name: str
    email: str
    phone: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemRow:
    """One line of an order."""

    order_id: int
    sku: str
    name: str
    quantity: int
    unit_cents: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRow:
    """An order; `paid_cents` is what was charged, refunds live at the payments service."""

    id: int
    customer_id: int
    status: str
    placed_at: datetime
    delivered_at: datetime | None
    total_cents: int
    paid_cents: int
    currency: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ShipmentRow:
    """A shipment as the store knows it; `carrier_status` is what the carrier will report."""

    order_id: int
    tracking_number: str
    carrier: str
    shipped_at: datetime
    carrier_status: str
    eta: datetime | None
    last_event: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyRow:
    """One version of the refund policy, in effect from `effective_from` until `effective_to`."""

    version: str
    effective_from: datetime
    effective_to: datetime | None
    return_window_days: int
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RefundRow:
    """A refund made before the store was seeded (it seeds the payments service)."""

    refund_id: str
    order_id: int
    amount_cents: int
    currency: str
    reason: str
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedData:
    """Everything the store, the carrier and the payments service start with."""

    customers: tuple[CustomerRow, ...]
    orders: tuple[OrderRow, ...]
    items: tuple[ItemRow, ...]
    shipments: tuple[ShipmentRow, ...]
    policies: tuple[PolicyRow, ...]
    refunds: tuple[RefundRow, ...]


_PINNED: dict[int, tuple[int, str, int | None, list[tuple[int, int]]]] = {
    # order: (customer, status, delivered days ago, [(catalog index, quantity)])
    1001: (3, "delivered", 3, [(2, 0), (10, 0)]),
    1003: (3, "delivered", 20, [(4, 1)]),
    1005: (5, "cancelled", None, [(1, 2)]),
    1007: (7, "partially_refunded", 6, [(4, 0), (1, 0)]),
    1012: (9, "delivered", 2, [(8, 0)]),
    1042: (7, "shipped", None, [(0, 0), (1, 0), (3, 0)]),
}


def _policies(now: datetime) -> tuple[PolicyRow, ...]:
    v1_from = now - timedelta(days=400)
    v2_from = now - timedelta(days=90)
    v3_from = now + timedelta(days=60)
    body = ("Items may be returned for a refund within {days} days of delivery. Orders that have "
            "not shipped yet may be refunded in full. Orders in transit can be refunded once "
            "delivered. Cancelled orders were never charged. A refund never exceeds what was "
            "paid, less earlier refunds.")
    return (
        PolicyRow(version="v1", effective_from=v1_from, effective_to=v2_from,
                  return_window_days=30, text=body.format(days=30)),
        PolicyRow(version="v2", effective_from=v2_from, effective_to=v3_from,
                  return_window_days=14, text=body.format(days=14)),
        PolicyRow(version="v3", effective_from=v3_from, effective_to=None,
                  return_window_days=21, text=body.format(days=21)),
    )


def build_seed(now: datetime) -> SeedData:
    """The reference data, identical for every call with the same `now` (dates shift with it)."""
    rng = random.Random(SEED)
    customers = tuple(
        CustomerRow(id=i + 1, name=f"{_FIRST[i]} {_LAST[i]}",
                    email=f"{_FIRST[i].lower()}.{_LAST[i].lower()}@example.com",
                    phone=f"+1-555-01{i:02d}-{1000 + 37 * i}")
        for i in range(CUSTOMER_COUNT)
    )
    statuses = ["paid", "shipped", "delivered", "cancelled", "partially_refunded"]
    weights = [2, 3, 4, 1, 2]
    orders: list[OrderRow] = []
    items: list[ItemRow] = []
    shipments: list[ShipmentRow] = []
    refunds: list[RefundRow] = []
    for order_id in range(FIRST_ORDER, FIRST_ORDER + ORDER_COUNT):
        if order_id in _PINNED:
            customer_id, status, delivered_ago, lines = _PINNED[order_id]
            rng.random()  # keep the stream aligned with unpinned orders
        else:
            customer_id = rng.randint(1, CUSTOMER_COUNT)
            status = rng.choices(statuses, weights)[0]
            delivered_ago = rng.randint(1, 40) if status in ("delivered",
                                                             "partially_refunded") else None
            lines = [(rng.randrange(len(_CATALOG)), rng.randint(0, 1))
                     for _ in range(rng.randint(1, 3))]
        order_lines: list[ItemRow] = []
        for index, extra in lines:
            sku, name, unit = _CATALOG[index]
            if all(sku != line.sku for line in order_lines):
                order_lines.append(ItemRow(order_id=order_id, sku=sku, name=name,
                                           quantity=1 + extra, unit_cents=unit))
        total = sum(line.quantity * line.unit_cents for line in order_lines)
        items.extend(order_lines)
        delivered_at = now - timedelta(days=delivered_ago, hours=3) if delivered_ago else None
        age = (delivered_ago or 0) + rng.randint(2, 6)
        placed_at = now - timedelta(days=age, hours=rng.randint(0, 20))
        paid = 0 if status == "cancelled" else total
        orders.append(OrderRow(id=order_id, customer_id=customer_id, status=status,
                               placed_at=placed_at, delivered_at=delivered_at,
                               total_cents=total, paid_cents=paid, currency="USD"))
        if status in ("shipped", "delivered", "partially_refunded"):
            carrier, prefix = _CARRIERS[order_id % len(_CARRIERS)]
            tracking = f"{prefix}{order_id}{rng.randint(100000, 999999)}"
            shipped_at = placed_at + timedelta(days=1)
            if status == "shipped":
                live = "in_transit" if order_id == 1042 else rng.choice(
                    ["label_created", "in_transit", "in_transit", "out_for_delivery", "exception"])
                eta: datetime | None = now + timedelta(days=rng.randint(1, 4))
                last = {"label_created": "Label created, awaiting pickup",
                        "in_transit": "Departed regional facility",
                        "out_for_delivery": "Out for delivery",
                        "exception": "Delivery exception: address could not be verified"}[live]
            else:
                live, eta, last = "delivered", delivered_at, "Delivered, left at front door"
            shipments.append(ShipmentRow(order_id=order_id, tracking_number=tracking,
                                         carrier=carrier, shipped_at=shipped_at,
                                         carrier_status=live, eta=eta, last_event=last))
        if status == "partially_refunded":
            amount = 2000 if order_id == 1007 else max(100, (paid // 4) // 100 * 100)
            refunds.append(RefundRow(refund_id=f"rf_seed_{order_id}", order_id=order_id,
                                     amount_cents=amount, currency="USD",
                                     reason="partial return",
                                     created_at=(delivered_at or now) + timedelta(hours=5)))
    return SeedData(customers=customers, orders=tuple(orders), items=tuple(items),
                    shipments=tuple(shipments), policies=_policies(now), refunds=tuple(refunds))
