from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from graphs.core.clock import FakeClock, parse_iso
from graphs.core.state import Actor
from tools.policy import FaultSpec
from tools.simulators import CarrierSimulator, PaymentsSimulator
from tools.store import Store

STAFF: Actor = {"kind": "staff", "customer_id": None}
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CARRIER_FIELDS = {"tracking_number", "carrier", "status", "eta", "last_event", "as_of"}
REFUND_FIELDS = {"refund_id", "order_id", "amount_cents", "currency", "status", "created_at"}
STATUSES = {"label_created", "in_transit", "out_for_delivery", "delivered", "exception"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def carrier(store_path: Path, clock: FakeClock) -> CarrierSimulator:
    return CarrierSimulator(store_path, clock=clock)


@pytest.fixture
def payments(tmp_path: Path, store_path: Path, clock: FakeClock) -> PaymentsSimulator:
    return PaymentsSimulator(tmp_path / "payments.db", store_path, clock=clock)


@pytest.fixture
async def pay_client(payments: PaymentsSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(payments),
                                 base_url="http://payments.sim") as client:
        yield client


@pytest.fixture
async def carrier_client(carrier: CarrierSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(carrier),
                                 base_url="http://carrier.sim") as client:
        yield client


async def tracking_number(store_path: Path, clock: FakeClock, order_id: int = 1042) -> str:
    shipment = await Store(store_path, clock).shipment(order_id, actor=STAFF)
    assert shipment is not None
    return shipment.tracking_number


def refund_request(key: str | None, body: Any) -> httpx.Request:
    headers = {} if key is None else {"Idempotency-Key": key}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Request("POST", "http://payments.sim/v1/refunds", headers=headers,
                         content=content)


def body(order_id: int = 1012, amount: int = 1000, **changes: Any) -> dict[str, Any]:
    return {"order_id": order_id, "amount_cents": amount, "currency": "USD",
            "reason": "damaged", **changes}


# --- carrier ------------------------------------------------------------------------------------


async def test_carrier_known_tracking_number(carrier: CarrierSimulator, store_path: Path,
                                             clock: FakeClock) -> None:
    number = await tracking_number(store_path, clock)
    response = await carrier(httpx.Request("GET", f"http://carrier.sim/v1/shipments/{number}"))
    assert response.status_code == 200
    data = response.json()
    assert set(data) == CARRIER_FIELDS
    assert data["tracking_number"] == number
    assert data["status"] in STATUSES
    assert data["carrier"] and data["last_event"]
    assert data["as_of"].endswith("Z")
    assert parse_iso(data["as_of"]) == clock.now()


async def test_carrier_through_mock_transport(carrier_client: httpx.AsyncClient,
                                              store_path: Path, clock: FakeClock) -> None:
    number = await tracking_number(store_path, clock)
    response = await carrier_client.get(f"/v1/shipments/{number}")
    assert response.status_code == 200
    assert set(response.json()) == CARRIER_FIELDS
    assert response.json()["status"] == "in_transit"  # 1042 is pinned in transit


async def test_carrier_unknown_tracking_number(carrier_client: httpx.AsyncClient,
                                               carrier: CarrierSimulator) -> None:
    response = await carrier_client.get("/v1/shipments/ZZ0000000000")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found"}
    direct = await carrier(httpx.Request("GET", "http://carrier.sim/v1/shipments/NOPE1234"))
    assert direct.status_code == 404 and direct.json() == {"error": "not_found"}
    assert carrier.stats.calls == 2
    assert carrier.stats.statuses[404] == 2


# --- payments: idempotency ----------------------------------------------------------------------


async def test_missing_idempotency_key_is_400(payments: PaymentsSimulator) -> None:
    response = await payments(refund_request(None, body()))
    assert response.status_code == 400
    blank = await payments(refund_request("   ", body()))
    assert blank.status_code == 400
    assert payments.all_refunds() == []


async def test_first_post_creates_and_replay_returns_same_refund(
        payments: PaymentsSimulator, pay_client: httpx.AsyncClient) -> None:
    first = await pay_client.post("/v1/refunds", json=body(),
                                  headers={"Idempotency-Key": "key-1"})
    assert first.status_code == 201
    created = first.json()
    assert set(created) == REFUND_FIELDS
    assert (created["order_id"], created["amount_cents"], created["currency"]) == (1012, 1000,
                                                                                   "USD")
    second = await pay_client.post("/v1/refunds", json=body(),
                                   headers={"Idempotency-Key": "key-1"})
    assert second.status_code == 200
    assert second.json() == created
    made = payments.all_refunds()
    assert len(made) == 1
    assert made[0]["refund_id"] == created["refund_id"]
    assert made[0]["idempotency_key"] == "key-1"
    listed = await pay_client.get("/v1/refunds", params={"order_id": 1012})
    assert listed.status_code == 200
    assert [r["refund_id"] for r in listed.json()["refunds"]] == [created["refund_id"]]


async def test_same_key_different_body_is_409(payments: PaymentsSimulator) -> None:
    assert (await payments(refund_request("k", body(amount=1000)))).status_code == 201
    conflict = await payments(refund_request("k", body(amount=1100)))
    assert conflict.status_code == 409
    other_reason = await payments(refund_request("k", body(reason="other")))
    assert other_reason.status_code == 409
    assert len(payments.all_refunds()) == 1
    assert payments.all_refunds()[0]["amount_cents"] == 1000


async def test_distinct_keys_make_distinct_refunds(payments: PaymentsSimulator) -> None:
    a = await payments(refund_request("a", body(amount=500)))
    b = await payments(refund_request("b", body(amount=500)))
    assert a.status_code == b.status_code == 201
    assert a.json()["refund_id"] != b.json()["refund_id"]
    assert len(payments.refunds(1012)) == 2


async def test_amount_above_what_is_left_is_422(payments: PaymentsSimulator,
                                                store_path: Path, clock: FakeClock) -> None:
    order = await Store(store_path, clock).order(1007, actor=STAFF)
    assert order is not None
    already = sum(r["amount_cents"] for r in payments.refunds(1007))
    left = order.paid_cents - already
    assert 0 < left < order.paid_cents
    too_much = await payments(refund_request("over", body(1007, left + 1)))
    assert too_much.status_code == 422
    assert too_much.json()["refundable_cents"] == left
    assert (await payments(refund_request("exact", body(1007, left)))).status_code == 201
    again = await payments(refund_request("more", body(1007, 1)))
    assert again.status_code == 422
    assert [r["idempotency_key"] for r in payments.all_refunds()] == ["exact"]


async def test_cancelled_order_cannot_be_refunded(payments: PaymentsSimulator,
                                                  store_path: Path, clock: FakeClock) -> None:
    order = await Store(store_path, clock).order(1005, actor=STAFF)
    assert order is not None and order.status == "cancelled"
    response = await payments(refund_request("c", body(1005, 100)))
    assert response.status_code == 422
    assert payments.all_refunds() == []


@pytest.mark.parametrize("payload", [
    b"not json",
    b"[]",
    body(amount=-5),
    body(amount=0),
    body(amount="100"),
    body(order_id="1012"),
    body(currency="US"),
    {"order_id": 1012, "amount_cents": 100, "currency": "USD"},
    body(reason="x" * 501),
])
async def test_invalid_body_is_400(payments: PaymentsSimulator, payload: Any) -> None:
    response = await payments(refund_request("bad", payload))
    assert response.status_code == 400
    assert payments.all_refunds() == []


async def test_get_lists_seeded_refund_of_partially_refunded_order(
        pay_client: httpx.AsyncClient) -> None:
    response = await pay_client.get("/v1/refunds", params={"order_id": 1007})
    assert response.status_code == 200
    refunds = response.json()["refunds"]
    assert len(refunds) == 1
    assert set(refunds[0]) == REFUND_FIELDS
    assert (refunds[0]["order_id"], refunds[0]["amount_cents"]) == (1007, 2000)
    untouched = await pay_client.get("/v1/refunds", params={"order_id": 1012})
    assert untouched.json() == {"refunds": []}
    bad = await pay_client.get("/v1/refunds", params={"order_id": "abc"})
    assert bad.status_code == 400


async def test_state_persists_across_instances(tmp_path: Path, store_path: Path,
                                               clock: FakeClock) -> None:
    path = tmp_path / "shared-payments.db"
    first = PaymentsSimulator(path, store_path, clock=clock)
    created = await first(refund_request("persist", body()))
    assert created.status_code == 201
    second = PaymentsSimulator(path, store_path, clock=clock)
    assert [r["refund_id"] for r in second.all_refunds()] == [created.json()["refund_id"]]
    replay = await second(refund_request("persist", body()))
    assert replay.status_code == 200
    assert replay.json() == created.json()
    assert len(second.refunds(1012)) == 1


async def test_concurrent_posts_with_one_key_make_one_refund(
        payments: PaymentsSimulator, pay_client: httpx.AsyncClient) -> None:
    responses = await asyncio.gather(*(
        pay_client.post("/v1/refunds", json=body(), headers={"Idempotency-Key": "race"})
        for _ in range(10)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 9 + [201]
    assert len({r.json()["refund_id"] for r in responses}) == 1
    assert len(payments.all_refunds()) == 1
    assert len(payments.refunds(1012)) == 1


async def test_concurrent_posts_cannot_overdraw(payments: PaymentsSimulator,
                                                store_path: Path, clock: FakeClock) -> None:
    order = await Store(store_path, clock).order(1012, actor=STAFF)
    assert order is not None
    half = order.paid_cents // 2 + 1  # two of these do not fit
    responses = await asyncio.gather(*(payments(refund_request(f"k{i}", body(1012, half)))
                                       for i in range(6)))
    assert sorted(r.status_code for r in responses) == [201] + [422] * 5
    assert sum(r["amount_cents"] for r in payments.refunds(1012)) <= order.paid_cents


# --- faults -------------------------------------------------------------------------------------


async def test_fail_fault_is_503(payments: PaymentsSimulator, carrier: CarrierSimulator) -> None:
    payments.faults.set(FaultSpec(fail=1.0))
    carrier.faults.set(FaultSpec(fail=1.0))
    response = await payments(refund_request("f", body()))
    assert response.status_code == 503
    assert payments.all_refunds() == []
    tracked = await carrier(httpx.Request("GET", "http://carrier.sim/v1/shipments/ABCD1234"))
    assert tracked.status_code == 503


async def test_throttle_fault_is_429_with_retry_after(carrier_client: httpx.AsyncClient,
                                                      carrier: CarrierSimulator,
                                                      payments: PaymentsSimulator) -> None:
    carrier.faults.set(FaultSpec(throttle=1.0, retry_after=2))
    response = await carrier_client.get("/v1/shipments/ABCD1234")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    payments.faults.set(FaultSpec(throttle=1.0, retry_after=2))
    throttled = await payments(refund_request("t", body()))
    assert throttled.status_code == 429
    assert float(throttled.headers["Retry-After"]) == 2
    assert payments.all_refunds() == []


async def test_latency_uses_the_injected_clock(carrier: CarrierSimulator, clock: FakeClock,
                                               store_path: Path) -> None:
    number = await tracking_number(store_path, clock)
    carrier.faults.set(FaultSpec(latency=0.75))
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(3):
        response = await carrier(httpx.Request("GET",
                                               f"http://carrier.sim/v1/shipments/{number}"))
        assert response.status_code == 200
    assert clock.sleeps == [0.75, 0.75, 0.75]
    assert loop.time() - started < 0.5  # nothing waited for real
    assert parse_iso(response.json()["as_of"]) == clock.now()
    assert clock.monotonic() == pytest.approx(2.25)


async def test_lost_answer_is_504_but_the_refund_exists(payments: PaymentsSimulator) -> None:
    payments.faults.set(FaultSpec(lose=1.0))
    lost = await payments(refund_request("lost", body()))
    assert lost.status_code == 504
    made = payments.all_refunds()
    assert len(made) == 1 and made[0]["idempotency_key"] == "lost"
    # Retrying with the same key recovers the outcome and makes no second refund.
    replay = await payments(refund_request("lost", body()))
    assert replay.status_code == 200
    assert replay.json()["refund_id"] == made[0]["refund_id"]
    assert len(payments.all_refunds()) == 1


async def test_stats_count_requests(payments: PaymentsSimulator,
                                    pay_client: httpx.AsyncClient) -> None:
    assert payments.stats.calls == 0
    await pay_client.get("/v1/refunds", params={"order_id": 1007})
    await pay_client.post("/v1/refunds", json=body(), headers={"Idempotency-Key": "s"})
    payments.faults.set(FaultSpec(fail=1.0))
    await pay_client.post("/v1/refunds", json=body(), headers={"Idempotency-Key": "s"})
    await pay_client.get("/v1/nothing")
    assert payments.stats.calls == 4
    assert payments.stats.statuses[200] == 1
    assert payments.stats.statuses[201] == 1
    assert payments.stats.statuses[503] == 2
    assert payments.stats.in_flight == 0
