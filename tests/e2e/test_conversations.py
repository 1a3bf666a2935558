"""Conversations: a thread remembers what it is about, and no rule gets weaker for it."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from agents.registry import DEFAULT_WORKERS
from graphs.core.clock import FakeClock, iso
from graphs.core.state import STAFF, Actor
from graphs.replay import fork, replay
from graphs.runner import Interlock, RunResult, open_interlock
from graphs.settings import Settings
from tests.fakes import ScriptedChatModel
from tools.toolbox import build_toolbox

C9 = Actor(kind="customer", customer_id=9)
C3 = Actor(kind="customer", customer_id=3)


@pytest.fixture
def app(clocked_app: Interlock) -> Interlock:
    return clocked_app


def refunds_made(app: Interlock) -> list[tuple[int, int]]:
    assert app.toolbox.payments_sim is not None
    made = app.toolbox.payments_sim.all_refunds()
    return sorted((r["order_id"], r["amount_cents"]) for r in made)


def of_turn(result: RunResult, guard: str, turn: int) -> list[dict[str, Any]]:
    return [v for v in result.verdicts if v["guard"] == guard and v["turn"] == turn]


def steps(result: RunResult) -> list[tuple[str, int | None, int | None]]:
    assert result.plan is not None
    return [(s["worker"], s["order_id"], s["amount_cents"]) for s in result.plan["steps"]]


async def talk(app: Interlock, thread: str, actor: Actor, *messages: str) -> list[RunResult]:
    return [await app.run(m, thread_id=thread, actor=actor) for m in messages]


async def test_the_issue_conversation_is_answered_from_the_subject(app: Interlock) -> None:
    where, refund, total = await talk(app, "mt1", C9, "Where is my order 1012?",
                                      "Thanks. Can I get a refund of $10 on it?",
                                      "what was the total again?")
    assert "Order 1012 is delivered" in where.answer
    assert refund.status == "completed", refund.answer
    assert "I refunded $10.00 on order 1012" in refund.answer
    [plan] = of_turn(refund, "plan", 2)
    assert plan["from_turn"] == {"1012": 1}
    assert "from_turn: order 1012 was named by the same actor in turn 1" in plan["reasons"]
    assert "total $39.00" in total.answer and "Which order" not in total.answer
    assert refunds_made(app) == [(1012, 1000)]
    subject = (await app.state("mt1")).values["subject"]
    [order] = subject["orders"]
    assert (order["order_id"], order["by"], order["first_turn"], order["turn"]) == (
        1012, "customer:9", 1, 3)
    assert [a["amount_cents"] for a in subject["amounts"]] == [1000]


async def test_a_follow_up_reuses_fresh_facts_and_rereads_stale_ones(
        app: Interlock, clock: FakeClock) -> None:
    first, again = await talk(app, "f1", C9, "Where is order 1012?", "when did it arrive?")
    assert steps(again) == [("orders", 1012, None), ("shipping", 1012, None)]
    reused = {e["step_id"] for e in again.events if e["kind"] == "reuse"}
    assert reused == {"t2.s1", "t2.s2"}  # still fresh: nothing was asked again
    assert app.toolbox.carrier_sim is not None
    assert app.toolbox.carrier_sim.stats.calls == 1
    clock.advance(10 * 60)  # the shipment (5 min) went stale; the order (1 h) did not
    [later] = await talk(app, "f1", C9, "and where is it now?")
    assert app.toolbox.carrier_sim.stats.calls == 2
    assert {e["step_id"] for e in later.events if e["kind"] == "reuse"} == {"t3.s1"}
    shipment = later.facts["shipment:1012"]
    assert shipment["as_of"] != first.facts["shipment:1012"]["as_of"]
    assert shipment["step_id"] == "t3.s2"  # the answer's shipment is the one read now


async def test_a_refund_needs_its_amount_in_the_turn_or_a_confirmed_offer(
        app: Interlock) -> None:
    offer, confirmed = await talk(app, "r1", C9, "Refund $5 on order 1012",
                                  "Can I get a refund on it?")
    assert refunds_made(app) == [(1012, 500)]
    # The $5 of turn 1 is not carried over: the desk offers what is left, and waits.
    [proposed] = [f for f in confirmed.facts.values() if f["kind"] == "refund"
                  and f["step_id"].startswith("t2.")]
    assert proposed["value"]["status"] == "proposed"
    assert proposed["value"]["amount_cents"] == 3400
    assert "I can refund $34.00 on order 1012" in confirmed.answer
    assert refunds_made(app) == [(1012, 500)]
    [yes] = await talk(app, "r1", C9, "yes, go ahead")
    assert "I refunded $34.00 on order 1012" in yes.answer
    [plan] = of_turn(yes, "plan", 3)
    assert any(r.startswith("confirms: the offer of turn 2") for r in plan["reasons"])
    [gate] = of_turn(yes, "approval", 3)
    assert gate["action"] == "allow" and any(r.startswith("confirmed:") for r in gate["reasons"])
    assert refunds_made(app) == [(1012, 500), (1012, 3400)]
    [twice] = await talk(app, "r1", C9, "yes")
    assert "nothing waiting for your confirmation" in twice.answer
    assert refunds_made(app) == [(1012, 500), (1012, 3400)]


@pytest.mark.parametrize("answer", ["no thanks", "don't do it",
                                    "yes, and cancel order 1014", "maybe later", "ok?",
                                    "yes please, thanks, не надо", "ok thanks"])
async def test_anything_but_a_plain_yes_confirms_nothing(app: Interlock, answer: str) -> None:
    await talk(app, "n1", C9, "Where is order 1012?", "refund it please")
    [result] = await talk(app, "n1", C9, answer)
    assert refunds_made(app) == []
    assert (await app.state("n1")).values["subject"]["offer"] is None  # one reply only


async def test_a_yes_after_the_offer_expired_moves_nothing(app: Interlock,
                                                           clock: FakeClock) -> None:
    await talk(app, "e1", C9, "Please refund order 1012")
    clock.advance(app.settings.offer_ttl_s + 1)
    [late] = await talk(app, "e1", C9, "yes")
    assert late.status == "completed"
    assert "I can't take that as a yes" in late.answer and "expired" in late.answer
    assert late.plan is not None and late.plan["steps"] == []
    assert refunds_made(app) == []


async def test_a_yes_after_another_message_moves_nothing(app: Interlock) -> None:
    await talk(app, "e2", C9, "Please refund order 1012", "what is the status of it?")
    [late] = await talk(app, "e2", C9, "ok do it")
    assert "nothing waiting for your confirmation" in late.answer
    assert refunds_made(app) == []


async def test_a_yes_after_the_policy_changed_is_refused(settings: Settings,
                                                         clock: FakeClock) -> None:
    settings = replace(settings, offer_ttl_s=timedelta(days=1).total_seconds())
    async with open_interlock(settings, toolbox=build_toolbox(settings, clock=clock)) as app:
        [offer] = await talk(app, "p1", C9, "Please refund order 1012")
        [proposed] = [f for f in offer.facts.values() if f["kind"] == "refund"]
        assert proposed["value"]["policy_version"] == "v2"
        # Refund policy v3 takes over an hour from now (the seed has it 60 days out).
        switch = iso(clock.now() + timedelta(hours=1))
        with sqlite3.connect(settings.store_path) as db:
            db.execute("UPDATE policies SET effective_to = ? WHERE version = 'v2'", (switch,))
            db.execute("UPDATE policies SET effective_from = ? WHERE version = 'v3'", (switch,))
        clock.advance(2 * 3600)
        [yes] = await talk(app, "p1", C9, "yes please")
        [refund] = [f for f in yes.facts.values() if f["kind"] == "refund"
                    and f["step_id"].startswith("t2.")]
        assert refund["value"]["status"] == "refused"
        assert refund["value"]["reasons"][0].startswith("policy_changed:")
        assert "no longer stands" in yes.answer
        assert refunds_made(app) == []


async def test_an_offer_is_confirmed_only_by_whom_it_was_made_to(app: Interlock) -> None:
    await talk(app, "s1", C9, "Please refund order 1012")
    [staff] = await talk(app, "s1", STAFF, "yes")  # staff reading the thread say yes
    assert "nothing waiting for your confirmation" in staff.answer
    assert refunds_made(app) == []


async def test_two_candidates_are_a_question_back_never_a_guess(app: Interlock) -> None:
    await talk(app, "a1", C9, "Where is order 1012?", "And order 1014?")
    [which] = await talk(app, "a1", C9, "refund $10 on it")
    assert which.status == "completed"
    assert "Which order do you mean: #1014 or #1012?" in which.answer
    assert which.plan is not None and which.plan["steps"] == []
    [both] = await talk(app, "a1", C9, "what is the total of both?")
    assert {o for _, o, _ in steps(both)} == {1012, 1014}
    assert refunds_made(app) == []


async def test_it_never_reaches_an_order_another_actor_named(app: Interlock) -> None:
    # Staff name customer 3's order in a thread of their own; in customer 9's thread they name
    # customer 9's own 1014 (which customer 9 may see): neither becomes customer 9's "it".
    await talk(app, "staff-thread", STAFF, "Where is order 1001?")
    await talk(app, "c9", C9, "Hello")
    [seen] = await talk(app, "c9", STAFF, "Where is order 1014?")
    assert "Order 1014 is delivered" in seen.answer
    [probe] = await talk(app, "c9", C9, "Refund $10 on it")
    assert probe.status == "refused" and "order number" in probe.answer
    [status] = await talk(app, "c9", C9, "what is the status of that order?")
    assert "Which order do you mean?" in status.answer
    assert refunds_made(app) == []
    subject = (await app.state("c9")).values["subject"]
    assert [(o["order_id"], o["by"]) for o in subject["orders"]] == [(1014, "staff")]
    [mine] = await talk(app, "c9", STAFF, "and when did it arrive?")  # staff's own "it"
    assert steps(mine) == [("orders", 1014, None), ("shipping", 1014, None)]
    [other] = await talk(app, "c9", STAFF, "Where is order 1001?")
    assert "couldn't find order 1001" in other.answer  # staff see what customer 9 may see
    subject = (await app.state("c9")).values["subject"]
    assert [o["order_id"] for o in subject["orders"]] == [1014]  # not found: not remembered
    with pytest.raises(Exception, match="not found"):  # nor can customer 3 continue it
        await app.run("what is the status of it?", thread_id="c9", actor=C3)


async def test_an_offer_is_never_confirmed_in_a_fork(app: Interlock) -> None:
    await talk(app, "fk", C9, "Please refund order 1012")
    offered = (await app.history("fk"))[-1]["step"]
    await talk(app, "fk", C9, "no thanks, what is the status of it?")
    _, answer = await fork(app, "fk", from_step=offered, message="yes")
    assert answer is not None and "I can't take that as a yes" in answer.answer
    assert "copied or forked" in answer.answer
    assert refunds_made(app) == []


async def test_a_fork_keeps_the_subject_only_up_to_the_fork(app: Interlock) -> None:
    await talk(app, "k1", C9, "Where is order 1012?")
    step = (await app.history("k1"))[-1]["step"]
    await talk(app, "k1", C9, "And order 1014?")
    forked, answer = await fork(app, "k1", from_step=step, message="refund $10 on it")
    assert answer is not None and "I refunded $10.00 on order 1012" in answer.answer
    subject = (await app.state(forked)).values["subject"]
    assert [o["order_id"] for o in subject["orders"]] == [1012]
    original = (await app.state("k1")).values["subject"]
    assert sorted(o["order_id"] for o in original["orders"]) == [1012, 1014]


def _draft(*plan: tuple[str, int | None, int | None, list[str]],
           intents: list[str]) -> dict[str, Any]:
    return {"intents": intents, "steps": [
        {"id": f"s{n}", "worker": w, "order_id": o, "amount_cents": a, "depends_on": d}
        for n, (w, o, a, d) in enumerate(plan, start=1)]}


async def test_the_model_planner_sees_the_conversation_and_is_judged_by_the_same_rules(
        settings: Settings) -> None:
    script = [
        _draft(("orders", 1012, None, []), intents=["order_status"]),
        _draft(("orders", 1014, None, []), intents=["order_status"]),
        # "refund $10 on it" with two candidates: the model guesses 1012; the guard refuses
        # the guess and the rules planner asks back.
        _draft(("policy", None, None, []), ("orders", 1012, None, []),
               ("refunds", 1012, 1000, ["s1", "s2"]), intents=["refund"]),
        # "... asked them twice": not a reference to both orders; the guess is refused again.
        _draft(("policy", None, None, []), ("orders", 1012, None, []),
               ("refunds", 1012, 1000, ["s1", "s2"]), intents=["refund"]),
        # "on both": both orders fit, but a refund takes one order, named.
        _draft(("policy", None, None, []), ("orders", 1012, None, []),
               ("refunds", 1012, 1000, ["s1", "s2"]), intents=["refund"]),
        # "refund it" naming no amount: the model carries $10 over; refused, rules stand in.
        _draft(("policy", None, None, []), ("orders", 1014, None, []),
               ("refunds", 1014, 1000, ["s1", "s2"]), intents=["refund"]),
    ]
    model = ScriptedChatModel(script)
    toolbox = build_toolbox(replace(settings, model="openai:scripted"), chat_model=model)
    async with open_interlock(toolbox=toolbox, workers=DEFAULT_WORKERS) as app:
        await talk(app, "m1", C9, "Where is 1012? Mail me at jane.doe@example.com",
                   "And order 1014?")
        [guess] = await talk(app, "m1", C9, "refund $10 on it")
        [refused] = [v for v in of_turn(guess, "plan", 3) if not v["passed"]]
        assert refused["reasons"][0].startswith("unmentioned_order: 1012")
        assert "Which order do you mean" in guess.answer
        [loose] = await talk(app, "m1", C9, "Refund $10 on it, I already asked them twice")
        [refused] = [v for v in of_turn(loose, "plan", 4) if not v["passed"]]
        assert refused["reasons"][0].startswith("unmentioned_order: 1012")
        [both] = await talk(app, "m1", C9, "Refund $10 on both")
        refusals = [r for v in of_turn(both, "plan", 5) if not v["passed"] for r in v["reasons"]]
        assert any(r.startswith("ambiguous_order: t5.s3") for r in refusals)
        assert "exactly one order number" in both.answer
        [carried] = await talk(app, "m1", C9, "About order 1014: refund it")
        [bad] = [v for v in of_turn(carried, "plan", 6) if not v["passed"]]
        assert bad["reasons"][0].startswith("unmentioned_amount: 1000 cents")
        assert carried.plan is not None and carried.plan["source"] == "rules"
        assert "I can refund" in carried.answer
        seen = "\n".join(str(m.content) for m in model.calls[2])
        assert "Subject: orders this user named earlier: 1014 (turn 2), 1012 (turn 1)" in seen
        assert "jane.doe@example.com" not in seen and "[email redacted]" in seen
        [context] = [str(m.content) for m in model.calls[3]
                     if str(m.content).startswith("Conversation so far")]
        assert model.calls[3][1].type == "human"  # what users said is never a system message
        assert len(context) < 2600
    assert refunds_made(app) == []


async def test_a_long_conversation_is_bounded_for_the_model(settings: Settings) -> None:
    script = [_draft(("orders", 1012, None, []), intents=["order_status"])] * 30
    model = ScriptedChatModel(script)
    toolbox = build_toolbox(replace(settings, model="openai:scripted"), chat_model=model)
    async with open_interlock(toolbox=toolbox) as app:
        await talk(app, "b1", C9, *[f"Where is order 1012? note {n:02} " + "Details. " * 40
                                    for n in range(20)])
    [context] = [str(m.content) for m in model.calls[-1]
                 if str(m.content).startswith("Conversation so far")]
    assert len(context) < 2600
    assert "note 18" in context and "note 00" not in context  # the newest kept, in full order
    assert context.index("note 17") < context.index("note 18")
    assert "note 19" not in context  # the request itself is sent apart
    assert "…" in context  # a long message is cut


async def test_a_conversation_with_an_offer_and_a_yes_replays_exactly(app: Interlock) -> None:
    await talk(app, "rp1", C9, "Where is my order 1012?", "Can I get a refund on it?", "yes")
    assert refunds_made(app) == [(1012, 3900)]
    report = await replay(app, "rp1")
    assert report["reproduced"], report.get("first_difference")
    assert refunds_made(app) == [(1012, 3900)]  # a replay calls no dependency


async def test_an_amount_in_answer_to_an_offer_is_offered_and_paid_only_on_a_yes(
        app: Interlock) -> None:
    await talk(app, "am1", C9, "Where is my order 1012?", "Can I return it?")
    [smaller] = await talk(app, "am1", C9, "no, just $5 please")
    assert "I can refund $5.00 on order 1012" in smaller.answer
    [plan] = of_turn(smaller, "plan", 3)
    assert plan["from_turn"] == {"1012": 2}
    assert any(r.startswith("answers_offer: ") for r in plan["reasons"])
    assert refunds_made(app) == []  # an amount in answer to an offer moves nothing
    [yes] = await talk(app, "am1", C9, "yes")
    assert "I refunded $5.00 on order 1012" in yes.answer
    assert refunds_made(app) == [(1012, 500)]
    [later] = await talk(app, "am1", C9, "$20 then")  # no offer stands now
    assert later.status == "refused" and refunds_made(app) == [(1012, 500)]


@pytest.mark.parametrize("said", [
    "I paid $39 for it", "is $39 the total?", "Is the $39 including tax?",
    "what is $5 in euros?", "no, I don't want $5", "only $5?! that's insulting", "$5?",
    "maybe $5?", "no $5", "I paid $20 for order 1014, right?", "Was order 1014 $279?",
    "yes but only $10"])
async def test_an_amount_while_an_offer_stands_never_moves_money_by_itself(
        app: Interlock, said: str) -> None:
    await talk(app, "am2", C9, "Where is my order 1014?", "Where is my order 1012?",
               "Can I return order 1012?")
    [result] = await talk(app, "am2", C9, said)
    assert refunds_made(app) == [], result.answer
    assert result.pending_approval is None
    assert "I refunded" not in result.answer


async def test_both_after_an_offer_is_not_taken_as_the_offers_order(app: Interlock) -> None:
    await talk(app, "am3", C9, "Where are my orders 1012 and 1014?", "Can I return order 1012?")
    for said in ("refund $5 on both please", "no, refund $5 on the other order instead"):
        [result] = await talk(app, "am3", C9, said)
        assert "I refunded" not in result.answer and "I can refund $5.00" not in result.answer
        await talk(app, "am3", C9, "Can I return order 1012?")
    assert refunds_made(app) == []
