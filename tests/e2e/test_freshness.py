"""Freshness on a fake clock: fresh facts are reused, stale ones refreshed, scopes never mixed."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from graphs.core.clock import FakeClock
from graphs.core.state import Actor
from graphs.runner import Interlock


@pytest.fixture
def app(clocked_app: Interlock) -> Interlock:
    return clocked_app


def carrier_calls(app: Interlock) -> int:
    assert app.toolbox.carrier_sim is not None
    return app.toolbox.carrier_sim.stats.calls


def kinds(result: Any, kind: str) -> list[dict[str, Any]]:
    return [e for e in result.events if e["kind"] == kind]


async def test_a_resumed_conversation_rechecks_only_what_went_stale(
        app: Interlock, clock: FakeClock) -> None:
    first = await app.run("Where is my order 1042?")
    assert carrier_calls(app) == 1
    order_seen = first.facts["order:1042"]["as_of"]

    clock.advance(10 * 60)  # shipment status (5 min) is stale; order data (1 h) is not
    second = await app.run("Where is order 1042 now?", thread_id=first.thread_id)
    assert carrier_calls(app) == 2
    assert second.facts["order:1042"]["as_of"] == order_seen
    assert second.facts["shipment:1042"]["as_of"] != first.facts["shipment:1042"]["as_of"]
    [reuse] = kinds(second, "reuse")
    assert reuse["detail"]["facts"] == ["order:1042"] and reuse["step_id"] == "t2.s1"
    assert "Order 1042 is shipped" in second.answer and "in transit" in second.answer

    clock.advance(2 * 3600)  # now the order data is stale too
    third = await app.run("And order 1042?", thread_id=first.thread_id)
    assert kinds(third, "reuse") == []
    assert third.facts["order:1042"]["as_of"] != order_seen


async def test_a_superseded_policy_never_decides_a_refund(app: Interlock,
                                                          clock: FakeClock) -> None:
    first = await app.run("What is your return policy?")
    assert first.facts["policy:refund"]["version"] == "v2"
    clock.advance(timedelta(days=61).total_seconds())  # v3 (21 days) is in effect now
    refund = await app.run("Refund $5 on order 1012", thread_id=first.thread_id)
    assert refund.facts["policy:refund"]["version"] == "v3"
    assert kinds(refund, "reuse") == []  # v2 was not reused: it is no longer in effect
    [decision] = [v for v in refund.verdicts if v["guard"] == "approval"]
    assert "refund policy v3" in decision["reasons"][0]
    assert "v2" not in " ".join(decision["reasons"])


async def test_the_policy_in_force_is_reused_while_in_effect(app: Interlock,
                                                             clock: FakeClock) -> None:
    first = await app.run("What is your return policy?")
    clock.advance(3 * 24 * 3600)
    second = await app.run("What is your refund policy again?", thread_id=first.thread_id)
    assert [e["detail"]["facts"] for e in kinds(second, "reuse")] == [["policy:refund"]]
    assert second.facts["policy:refund"] == first.facts["policy:refund"]


async def test_facts_are_never_reused_across_scopes(app: Interlock) -> None:
    customer = Actor(kind="customer", customer_id=3)
    mine = await app.run("Where is order 1001?", actor=customer)
    elsewhere = await app.run("Where is order 1042?")
    assert elsewhere.facts["order:1042"]["value"]["found"]
    assert elsewhere.facts["order:1042"]["scope"] == "staff"
    # In customer 3's thread, which customer 3 may read in full, staff see what customer 3
    # may see: customer 7's order does not land there.
    staff = await app.run("Where is order 1042?", thread_id=mine.thread_id)
    assert not staff.facts["order:1042"]["value"]["found"]
    assert staff.facts["order:1042"]["scope"] == "customer:3"
    assert "JD1042" not in json.dumps((await app.state(mine.thread_id)).values, default=str)
    [intake] = [v for v in staff.verdicts if v["guard"] == "intake"]
    assert any(r.startswith("viewer: customer 3") for r in intake["reasons"])
    probe = await app.run("Where is order 1042?", thread_id=mine.thread_id, actor=customer)
    assert "couldn't find order 1042" in probe.answer
    assert probe.facts["order:1042"]["scope"] == "customer:3"
    again = await app.run("Where is order 1001?", thread_id=mine.thread_id, actor=customer)
    assert {e["step_id"] for e in kinds(again, "reuse")} == {"t4.s1", "t4.s2"}


async def test_facts_gone_stale_while_waiting_for_a_human_are_refreshed(
        app: Interlock, clock: FakeClock) -> None:
    waiting = await app.run("Where is order 1001, and please refund $60 on it")
    assert waiting.status == "awaiting_approval"
    assert carrier_calls(app) == 1
    clock.advance(3600)  # the shipment status went stale while staff looked at it
    done = await app.resume(waiting.thread_id, approve=True)
    assert done.status == "completed", done.answer
    assert carrier_calls(app) == 2
    [refresh] = kinds(done, "refresh")
    assert "shipment:1001" in refresh["detail"]["reason"]
    assert "I refunded $60.00 on order 1001" in done.answer
