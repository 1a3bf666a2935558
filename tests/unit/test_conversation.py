"""The conversation subject: what refers back, what confirms, and what the plan guard allows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from agents.conversation import make_remember
from agents.registry import DEFAULT_WORKERS
from agents.rules import rules_plan
from graphs.core.clock import iso
from graphs.core.conversation import (
    Resolution,
    empty_subject,
    is_confirmation,
    is_counter_offer,
    make_offer,
    remember,
    resolve,
)
from graphs.core.state import InterlockState, Plan, PlanStep, Subject
from graphs.settings import Settings
from guards.plan import plan_problems

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
WORKERS = {w.name: w for w in DEFAULT_WORKERS}


@pytest.mark.parametrize("text", ["yes", "Yes please!", "ok, go ahead", "do it", "confirm",
                                  "Go ahead, thanks", "yep", "I confirm", "yes, do it please"])
def test_plain_confirmations(text: str) -> None:
    assert is_confirmation(text)


@pytest.mark.parametrize("text", ["yes but $20", "no thanks", "don't do it", "Thanks",
                                  "yes, and cancel it", "yes refund order 1014", "not yet",
                                  "ok wait", "sure thing, and track 1012", "", "yes?", "ok?",
                                  "yes please, thanks, не надо", "yes ｎｏ", "ok thanks", "sure",
                                  "OK", "sounds good"])
def test_anything_more_or_less_is_not_a_confirmation(text: str) -> None:
    assert not is_confirmation(text)


def subject_of(*named: tuple[int, str, int], offer_turn: int | None = None,
               offer_by: str = "customer:9") -> Subject:
    subject = empty_subject()
    for order_id, by, turn in named:
        subject = remember(subject, turn=turn, by=by, answered={order_id: ["order"]},
                           named=[order_id], amounts=[], offer=None)
    if offer_turn is not None:
        subject["offer"] = make_offer(
            step_id=f"t{offer_turn}.s3", worker="refunds", order_id=1012, amount_cents=3900,
            currency="USD", policy_version="v2", summary="Refund $39.00 on order 1012",
            by=offer_by, turn=offer_turn, now=NOW, ttl_s=600, thread="th-1")
    return subject


def test_one_earlier_order_of_the_same_actor_is_what_it_means() -> None:
    subject = subject_of((1012, "customer:9", 1), (1001, "staff", 2))
    carried = resolve("refund $10 on it", subject, by="customer:9", turn=3, now=NOW)
    assert carried.order_ids == (1012,) and carried.from_turn == {1012: 1}
    # Staff named 1001 in this thread: customer 9's "it" never reaches it, nor staff's 1012.
    assert resolve("where is it?", subject, by="staff", turn=3, now=NOW).order_ids == (1001,)
    assert resolve("where is it?", subject, by="customer:3", turn=3, now=NOW) == Resolution()
    # A request that names its order refers back to nothing.
    assert resolve("where is 1014?", subject, by="customer:9", turn=3, now=NOW) == Resolution()


def test_two_candidates_are_ambiguous_unless_the_message_says_both() -> None:
    subject = subject_of((1012, "customer:9", 1), (1014, "customer:9", 2))
    carried = resolve("refund $10 on it", subject, by="customer:9", turn=3, now=NOW)
    assert carried.order_ids == () and carried.ambiguous == (1014, 1012)
    both = resolve("what are the totals of both?", subject, by="customer:9", turn=3, now=NOW)
    assert set(both.order_ids) == {1012, 1014}
    for loose in ("refund $10 on it, I asked them twice", "either way, where is it?"):
        assert resolve(loose, subject, by="customer:9", turn=3, now=NOW).order_ids == ()
    plan = rules_plan("refund $10 on it", turn=3, workers=DEFAULT_WORKERS, carried=carried)
    assert plan["steps"] == [] and plan["intents"] == ["clarify"]
    assert plan.get("asks") == ["Which order do you mean: #1014 or #1012? Please say it again "
                                "with the order number, for example 'where is #1014?'."]


def test_a_referred_back_order_keeps_the_turn_it_was_named_in() -> None:
    subject = subject_of((1012, "customer:9", 1))
    subject = remember(subject, turn=2, by="customer:9", answered={1012: ["shipment"]},
                       named=[], amounts=[1000], offer=None)
    [order] = subject["orders"]
    assert (order["first_turn"], order["named_turn"], order["turn"]) == (1, 1, 2)
    assert order["said"] == ["order", "shipment"]
    again = remember(subject, turn=2, by="customer:9", answered={1012: []}, named=[],
                     amounts=[1000], offer=None)
    assert again["amounts"] == subject["amounts"]  # the same turn remembered twice: once


@pytest.mark.parametrize(("turn", "by", "later", "thread", "problem"), [
    (3, "customer:9", 0, "th-1", None),
    (4, "customer:9", 0, "th-1", "offer_lapsed"),
    (3, "staff", 0, "th-1", "nothing_to_confirm"),
    (3, "customer:9", 601, "th-1", "offer_expired"),
    (3, "customer:9", 0, "th-1-fork-1a2b3c", "offer_elsewhere"),
])
def test_an_offer_stands_for_its_actor_in_its_thread_for_one_reply_until_it_expires(
        turn: int, by: str, later: int, thread: str, problem: str | None) -> None:
    subject = subject_of((1012, "customer:9", 1), offer_turn=2)
    carried = resolve("yes", subject, by=by, turn=turn, now=NOW + timedelta(seconds=later),
                      thread=thread)
    if problem is None:
        assert carried.confirms == subject["offer"] and carried.order_ids == (1012,)
    else:
        assert carried.confirms is None and (carried.refusal or "").startswith(problem)


def _refund_plan(order: int, amount: int | None, turn: int = 3) -> Plan:
    steps = [PlanStep(id=f"t{turn}.s1", worker="policy", order_id=None, amount_cents=None,
                      depends_on=[]),
             PlanStep(id=f"t{turn}.s2", worker="orders", order_id=order, amount_cents=None,
                      depends_on=[]),
             PlanStep(id=f"t{turn}.s3", worker="refunds", order_id=order, amount_cents=amount,
                      depends_on=[f"t{turn}.s1", f"t{turn}.s2"])]
    return Plan(source="model", intents=["refund"], steps=steps, waves=[])


def test_the_plan_guard_allows_an_earlier_order_but_never_a_carried_amount() -> None:
    settings = Settings()
    subject = subject_of((1012, "customer:9", 1))
    subject["amounts"] = [{"amount_cents": 1000, "by": "customer:9", "turn": 1}]

    def problems(text: str, plan: Plan, who: str = "customer:9") -> list[str]:
        carried = resolve(text, subject, by=who, turn=3, now=NOW)
        return plan_problems(plan, text, turn=3, settings=settings, workers=WORKERS,
                             carried=carried)

    assert problems("refund $10 on it", _refund_plan(1012, 1000)) == []
    assert problems("refund it", _refund_plan(1012, None)) == []
    [carried_amount] = problems("refund it", _refund_plan(1012, 1000))
    assert carried_amount.startswith("unmentioned_amount: 1000 cents")
    other_order = problems("refund $10 on it", _refund_plan(1014, 1000))
    assert other_order and all(p.startswith("unmentioned_order: 1014") for p in other_order)
    not_theirs = problems("refund $10 on it", _refund_plan(1012, 1000), who="customer:3")
    assert not_theirs and all(p.startswith("unmentioned_order: 1012") for p in not_theirs)
    assert problems("refund $10 on it", _refund_plan(1012, 1000), who="staff") != []


def test_a_yes_carries_out_exactly_the_offer() -> None:
    settings = Settings()
    subject = subject_of((1012, "customer:9", 1), offer_turn=2)
    carried = resolve("yes", subject, by="customer:9", turn=3, now=NOW, thread="th-1")
    plan = rules_plan("yes", turn=3, workers=DEFAULT_WORKERS, carried=carried)
    [refund] = [s for s in plan["steps"] if s["worker"] == "refunds"]
    assert (refund["order_id"], refund["amount_cents"]) == (1012, 3900)
    assert refund.get("confirms") == subject["offer"]
    assert plan_problems(plan, "yes", turn=3, settings=settings, workers=WORKERS,
                         carried=carried) == []
    more = _refund_plan(1012, 4000)  # not the offer's amount
    [wrong] = plan_problems(more, "yes", turn=3, settings=settings, workers=WORKERS,
                            carried=carried)
    assert wrong.startswith("unmentioned_amount: 4000 cents")
    lapsed = resolve("yes", subject, by="customer:9", turn=4, now=NOW, thread="th-1")
    forged = Plan(**{**plan, "steps": [PlanStep(**{**s, "id": s["id"].replace("t3", "t4"),
                                                   "depends_on": [d.replace("t3", "t4")
                                                                  for d in s["depends_on"]]})
                                       for s in plan["steps"]]})
    found = plan_problems(forged, "yes", turn=4, settings=settings, workers=WORKERS,
                          carried=lapsed)
    assert any(p.startswith("unmentioned_amount") and "offer_lapsed" in p for p in found)
    assert any(p.startswith("bad_confirmation") for p in found)


def test_a_side_effect_never_takes_one_of_several_earlier_orders() -> None:
    subject = subject_of((1012, "customer:9", 1), (1014, "customer:9", 2))
    carried = resolve("refund $10 on both", subject, by="customer:9", turn=3, now=NOW)
    assert set(carried.order_ids) == {1012, 1014}
    found = plan_problems(_refund_plan(1012, 1000), "refund $10 on both", turn=3,
                          settings=Settings(), workers=WORKERS, carried=carried)
    assert [p for p in found if p.startswith("ambiguous_order: t3.s3 (refunds)")]


def _state(status: str, value: dict[str, Any], *, text: str = "Where is order 1001?",
           worker: str = "orders") -> InterlockState:
    step = PlanStep(id="t1.s1", worker=worker, order_id=1001, amount_cents=None, depends_on=[])
    fact_ids = ["order:1001"] if value else []
    return cast(InterlockState, {
        "request": {"turn": 1, "text": text, "actor": {"kind": "customer", "customer_id": 9},
                    "message_id": "m", "received_at": iso(NOW), "deadline_at": iso(NOW)},
        "plan": Plan(source="rules", intents=[], steps=[step], waves=[["t1.s1"]]),
        "results": {"t1.s1": {"step_id": "t1.s1", "worker": worker, "status": status,
                              "fact_ids": fact_ids, "note": ""}},
        "facts": {"order:1001": {"id": "order:1001", "kind": "order", "subject": "1001",
                                 "value": value, "step_id": "t1.s1", "worker": worker,
                                 "as_of": iso(NOW)}} if value else {},
        "messages": []})


@pytest.mark.parametrize(("status", "value", "kept"), [
    ("done", {"order_id": 1001, "found": True}, True),
    ("not_found", {"order_id": 1001, "found": False}, False),
    ("done", {"order_id": 1001, "found": False}, False),
    ("skipped", {}, False),  # the lookup never ran: nothing showed the order exists
    ("failed", {}, False),
])
async def test_only_orders_a_fact_showed_to_exist_are_remembered(
        status: str, value: dict[str, Any], kept: bool) -> None:
    remember_turn = make_remember(offer_ttl_s=600, side_effects=("refunds",))
    written = await remember_turn(_state(status, value), "th-1")
    assert [o["order_id"] for o in written["subject"]["orders"]] == ([1001] if kept else [])


@pytest.mark.parametrize(("text", "counter"), [
    ("no, just $5 please", True), ("yes but only $10", True), ("$20 then", True),
    ("How about $10?", True), ("make it $10", True),
    ("I paid $39 for it", False), ("what is $5 in euros?", False),
    ("I want $10 back and cancel 1014", False), ("it cost me $39, the lamp broke", False),
])
def test_only_an_amount_in_place_of_the_offers_answers_it(text: str, counter: bool) -> None:
    assert is_counter_offer(text) is counter
    subject = subject_of((1012, "customer:9", 1), offer_turn=2)
    carried = resolve(text, subject, by="customer:9", turn=3, now=NOW, thread="th-1")
    assert (carried.open_offer is not None) is counter
    elsewhere = resolve(text, subject, by="customer:9", turn=3, now=NOW, thread="other")
    assert elsewhere.open_offer is None  # an offer stands in its own thread only
