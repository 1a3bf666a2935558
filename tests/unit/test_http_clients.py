from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn

from graphs.core.clock import FakeClock
from graphs.core.state import Actor
from graphs.settings import FaultSpec, Settings
from tests.conftest import fast_settings
from tools.carrier import CarrierClient, Tracking
from tools.errors import DependencyError
from tools.governor import CallContext, Governor
from tools.http import Handler, LoopClients
from tools.payments import PaymentsClient
from tools.simulators.serve import asgi_app, build_simulator
from tools.toolbox import Toolbox, build_toolbox

STAFF: Actor = {"kind": "staff", "customer_id": None}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return fast_settings(tmp_path / "home")


@pytest.fixture
def toolbox(settings: Settings) -> Toolbox:
    return build_toolbox(settings)


async def tracking_number(toolbox: Toolbox, order_id: int = 1042) -> str:
    shipment = await toolbox.store.shipment(order_id, actor=STAFF)
    assert shipment is not None
    return shipment.tracking_number


# --- carrier ------------------------------------------------------------------------------------


async def test_track_known_shipment(toolbox: Toolbox) -> None:
    assert toolbox.carrier_sim is not None
    number = await tracking_number(toolbox)
    ctx = CallContext(step_id="track-1")
    tracking = await toolbox.carrier.track(number, ctx)
    assert isinstance(tracking, Tracking)
    assert tracking.tracking_number == number
    assert tracking.status == "in_transit"
    assert tracking.carrier and tracking.last_event
    assert tracking.as_of.utcoffset() == timedelta(0)
    assert toolbox.carrier_sim.stats.calls == 1
    assert [e["kind"] for e in ctx.events] == ["attempt", "result"]
    assert ctx.events[0]["detail"]["outcome"] == "ok"
    assert ctx.events[1]["detail"]["result"]["status"] == "in_transit"  # kept for replay


async def test_track_delivered_shipment(toolbox: Toolbox) -> None:
    number = await tracking_number(toolbox, 1001)
    tracking = await toolbox.carrier.track(number, CallContext())
    assert tracking is not None and tracking.status == "delivered"


async def test_track_unknown_is_none(toolbox: Toolbox) -> None:
    assert toolbox.carrier_sim is not None
    assert await toolbox.carrier.track("ZZ999999999", CallContext()) is None
    assert toolbox.carrier_sim.stats.calls == 1  # a 404 is an answer, not a failure
    assert toolbox.governor.breaker("carrier").state == "closed"


async def test_carrier_failure_after_attempts(toolbox: Toolbox, settings: Settings) -> None:
    sim = toolbox.carrier_sim
    assert sim is not None
    number = await tracking_number(toolbox)
    sim.faults.set(FaultSpec(fail=1.0))
    ctx = CallContext()
    with pytest.raises(DependencyError) as caught:
        await toolbox.carrier.track(number, ctx)
    assert caught.value.dependency == "carrier"
    assert caught.value.retryable is True
    assert caught.value.status == 503
    assert sim.stats.calls == settings.policy("carrier").attempts
    assert sim.stats.statuses[503] == settings.policy("carrier").attempts


async def test_carrier_throttling_honours_retry_after(settings: Settings) -> None:
    clock = FakeClock()
    toolbox = build_toolbox(settings, clock=clock)
    sim = toolbox.carrier_sim
    assert sim is not None
    number = await tracking_number(toolbox)
    sim.faults.set(FaultSpec(throttle=1.0, retry_after=2))
    with pytest.raises(DependencyError) as caught:
        await toolbox.carrier.track(number, CallContext())
    assert caught.value.reason == "throttled"
    attempts = settings.policy("carrier").attempts
    assert sim.stats.calls == attempts
    assert len(clock.sleeps) == attempts - 1
    assert all(s >= 2 for s in clock.sleeps)


async def test_carrier_recovers_after_transient_failures(settings: Settings) -> None:
    toolbox = build_toolbox(settings)
    sim = toolbox.carrier_sim
    assert sim is not None
    number = await tracking_number(toolbox)
    sim.faults.set(FaultSpec(fail=0.5, seed=3))
    results = []
    for _ in range(5):
        results.append(await toolbox.carrier.track(number, CallContext()))
    assert all(r is not None and r.tracking_number == number for r in results)
    assert sim.stats.statuses[503] > 0  # some attempts did fail and were retried
    assert sim.stats.calls == 5 + sim.stats.statuses[503]


# --- payments -----------------------------------------------------------------------------------


async def test_refund_with_same_key_is_replayed(toolbox: Toolbox) -> None:
    sim = toolbox.payments_sim
    assert sim is not None
    args = {"order_id": 1012, "amount_cents": 1500, "currency": "USD", "reason": "damaged",
            "idempotency_key": "req-1:refund"}
    first = await toolbox.payments.refund(**args, ctx=CallContext())
    second = await toolbox.payments.refund(**args, ctx=CallContext())
    assert first.replayed is False
    assert second.replayed is True
    assert second.refund_id == first.refund_id
    assert (first.order_id, first.amount_cents, first.currency) == (1012, 1500, "USD")
    assert len(sim.all_refunds()) == 1
    listed = await toolbox.payments.refunds(1012, CallContext())
    assert [r.refund_id for r in listed] == [first.refund_id]


async def test_refund_above_refundable_is_not_retried(toolbox: Toolbox) -> None:
    sim = toolbox.payments_sim
    assert sim is not None
    order = await toolbox.store.order(1012, actor=STAFF)
    assert order is not None
    with pytest.raises(DependencyError) as caught:
        await toolbox.payments.refund(order_id=1012, amount_cents=order.paid_cents + 1,
                                      currency="USD", reason="too much",
                                      idempotency_key="over", ctx=CallContext())
    assert caught.value.retryable is False
    assert caught.value.status == 422
    assert caught.value.dependency == "payments"
    assert sim.stats.calls == 1
    assert sim.all_refunds() == []
    assert toolbox.governor.breaker("payments").state == "closed"


async def test_lost_answer_is_retried_without_a_second_refund(toolbox: Toolbox) -> None:
    sim = toolbox.payments_sim
    assert sim is not None
    sim.faults.set(FaultSpec(lose=1.0))
    refund = await toolbox.payments.refund(order_id=1012, amount_cents=700, currency="USD",
                                           reason="late", idempotency_key="lost-1",
                                           ctx=CallContext())
    assert refund.replayed is True
    assert sim.stats.statuses[504] == 1
    made = sim.all_refunds()
    assert [r["refund_id"] for r in made] == [refund.refund_id]


async def test_list_refunds_includes_seeded(toolbox: Toolbox) -> None:
    refunds = await toolbox.payments.refunds(1007, CallContext())
    assert [(r.order_id, r.amount_cents) for r in refunds] == [(1007, 2000)]


async def test_same_key_other_body_is_a_non_retryable_conflict(toolbox: Toolbox) -> None:
    sim = toolbox.payments_sim
    assert sim is not None
    await toolbox.payments.refund(order_id=1012, amount_cents=500, currency="USD",
                                  reason="damaged", idempotency_key="k", ctx=CallContext())
    with pytest.raises(DependencyError) as caught:
        await toolbox.payments.refund(order_id=1012, amount_cents=900, currency="USD",
                                      reason="damaged", idempotency_key="k", ctx=CallContext())
    assert caught.value.status == 409
    assert caught.value.retryable is False
    assert sim.stats.calls == 2
    assert [r["amount_cents"] for r in sim.all_refunds()] == [500]


# --- answers that break the contract ------------------------------------------------------------


def answering(response: httpx.Response) -> Handler:
    async def handler(request: httpx.Request) -> httpx.Response:
        return response

    return handler


def governor(settings: Settings) -> Governor:
    return Governor(settings, clock=FakeClock(), rng=random.Random(0))


def carrier_answering(settings: Settings, response: httpx.Response) -> CarrierClient:
    return CarrierClient(LoopClients("http://carrier.test", handler=answering(response)),
                         governor(settings))


def payments_answering(settings: Settings, response: httpx.Response) -> PaymentsClient:
    return PaymentsClient(LoopClients("http://payments.test", handler=answering(response)),
                          governor(settings))


@pytest.mark.parametrize("payload", [
    {"tracking_number": "AB1234", "carrier": "UPS", "status": "lost_in_space", "eta": None,
     "last_event": "", "as_of": "2026-11-25T12:00:00Z"},
    {"tracking_number": "AB1234", "carrier": "UPS", "status": "delivered"},
    {"tracking_number": "AB1234", "carrier": "UPS", "status": "delivered", "eta": None,
     "last_event": "", "as_of": "yesterday"},
    "null",
    [1, 2],
])
async def test_carrier_malformed_json_answer(settings: Settings, payload: object) -> None:
    response = (httpx.Response(200, content=b"null") if payload == "null"
                else httpx.Response(200, json=payload))
    client = carrier_answering(settings, response)
    with pytest.raises(DependencyError) as caught:
        await client.track("AB1234", CallContext())
    assert (caught.value.dependency, caught.value.reason) == ("carrier", "malformed")
    assert caught.value.retryable is False


async def test_carrier_non_json_answer(settings: Settings) -> None:
    client = carrier_answering(settings, httpx.Response(200, text="<html>proxy</html>"))
    with pytest.raises(DependencyError) as caught:
        await client.track("AB1234", CallContext())
    assert (caught.value.dependency, caught.value.reason) == ("carrier", "malformed")


async def test_refund_non_json_answer(settings: Settings) -> None:
    client = payments_answering(settings, httpx.Response(201, text="created"))
    with pytest.raises(DependencyError) as caught:
        await client.refund(order_id=1012, amount_cents=100, currency="USD", reason="x",
                            idempotency_key="k", ctx=CallContext())
    assert (caught.value.dependency, caught.value.reason) == ("payments", "malformed")


@pytest.mark.parametrize("response", [httpx.Response(200, json=[1, 2]),
                                      httpx.Response(200, text="oops")])
async def test_list_refunds_malformed_answer(settings: Settings,
                                             response: httpx.Response) -> None:
    client = payments_answering(settings, response)
    with pytest.raises(DependencyError) as caught:
        await client.refunds(1012, CallContext())
    assert (caught.value.dependency, caught.value.reason) == ("payments", "malformed")


async def test_list_refunds_without_list_is_malformed(settings: Settings) -> None:
    client = payments_answering(settings, httpx.Response(200, json={"items": []}))
    with pytest.raises(DependencyError) as caught:
        await client.refunds(1012, CallContext())
    assert (caught.value.dependency, caught.value.reason) == ("payments", "malformed")


# --- over real HTTP -----------------------------------------------------------------------------


@pytest.fixture
async def served_payments(settings: Settings) -> AsyncIterator[str]:
    sim = build_simulator("payments", settings)
    server = uvicorn.Server(uvicorn.Config(asgi_app(sim), host="127.0.0.1", port=0,
                                           lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 5)


async def test_refund_over_real_http(settings: Settings, served_payments: str) -> None:
    assert served_payments.startswith("http://127.0.0.1:")
    toolbox = build_toolbox(settings.with_url("payments", served_payments))
    assert toolbox.payments_sim is None
    # The client's connection must be closed before the server stops.
    try:
        refund = await toolbox.payments.refund(order_id=1012, amount_cents=1200, currency="USD",
                                               reason="damaged", idempotency_key="http-1",
                                               ctx=CallContext())
        again = await toolbox.payments.refund(order_id=1012, amount_cents=1200, currency="USD",
                                              reason="damaged", idempotency_key="http-1",
                                              ctx=CallContext())
    finally:
        await toolbox.aclose()
    assert (refund.replayed, again.replayed) == (False, True)
    assert again.refund_id == refund.refund_id
    async with httpx.AsyncClient(base_url=served_payments) as client:
        response = await client.get("/_sim/refunds")
        stats = await client.get("/_sim/stats")
    assert response.status_code == 200
    made = response.json()["refunds"]
    assert len(made) == 1
    assert made[0]["refund_id"] == refund.refund_id
    assert made[0]["idempotency_key"] == "http-1"
    assert stats.json()["calls"] == 2


def test_a_503_in_the_services_own_words_is_told_from_a_proxys() -> None:
    from tools.http import classify

    own = classify("payments", httpx.Response(503, json={"error": "unavailable"}))
    proxy = classify("payments", httpx.Response(
        503, text="upstream connect error or disconnect/reset before headers"))
    assert (own.reason, own.retryable) == ("unavailable", True)
    assert (proxy.reason, proxy.retryable) == ("upstream_unavailable", True)
