"""The claims team and the drafting crew as Interlock sees them: remote, governed, checked.

Their servers are scripted in-process here (the real AutoGen team and CrewAI crew, in their own
environments, are driven in `test_foreign_envs.py`): what matters is what Interlock does with
what they say. A claims team may only add caution to a refund; a crew's wording stands only if
the output guard passes all of it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from agents import claims, drafting
from agents.registry import DEFAULT_WORKERS
from graphs.core.actors import Actor
from graphs.runner import Interlock, open_interlock
from graphs.settings import Settings
from tests.e2e.devserver import free_port
from tests.fakes import ScriptedChatModel
from tools.toolbox import build_toolbox

SMALL = "My order 1034 arrived damaged, the mug is broken. Please refund $5."
LARGE = "Order 1034 arrived broken. Refund $80 please."


def _script(answers: list[httpx.Response], seen: list[httpx.Request]) -> Any:
    async def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0) if answers else httpx.Response(500)
    return handle


def assessed(verdict: Any, reasons: list[str] | None = None,
             order_id: int = 1034) -> httpx.Response:
    return httpx.Response(200, json={"status": "done", "note": "", "facts": [{
        "kind": "claim_assessment", "subject": str(order_id), "source": "autogen-claims-team",
        "value": {"order_id": order_id, "verdict": verdict,
                  "reasons": reasons or ["the order was delivered intact per the carrier"]}}]})


def worded(text: str) -> httpx.Response:
    return httpx.Response(200, json={"status": "done", "text": text, "note": ""})


async def _app(settings: Settings, *, claims_answers: list[httpx.Response] | None = None,
               drafts: list[httpx.Response] | None = None, urls: dict[str, str] | None = None,
               seen: list[httpx.Request] | None = None,
               plans: list[Any] | None = None) -> AsyncIterator[Interlock]:
    seen = seen if seen is not None else []
    settings = settings.with_dependencies(claims.CLAIMS, drafting.DRAFTING)
    settings = replace(settings, drafters=(drafting.DRAFTER,) if drafts is not None
                       or "drafting" in (urls or {}) else ())
    for name, url in (urls or {}).items():
        settings = settings.with_url(name, url)
    simulators: dict[str, Any] = {}
    if claims_answers is not None:
        simulators["claims"] = _script(claims_answers, seen)
    if drafts is not None:
        simulators["drafting"] = _script(drafts, seen)
    if plans is not None:  # the model plans (scripted)
        settings = replace(settings, model="openai:scripted")
    toolbox = build_toolbox(settings, simulators=simulators, chat_model=ScriptedChatModel(
        plans) if plans is not None else None)
    async with open_interlock(toolbox=toolbox, workers=[*DEFAULT_WORKERS, claims.SPEC]) as app:
        yield app


def _gate(result: Any) -> list[dict[str, Any]]:
    return [v for v in result.verdicts if v["guard"] == "approval"]


async def test_a_claim_the_team_doubts_sends_a_small_refund_to_a_human(
        settings: Settings) -> None:
    seen: list[httpx.Request] = []
    async for app in _app(settings, claims_answers=[assessed(
            "needs_evidence", ["no photo of the damage"])], seen=seen):
        result = await app.run(SMALL)
    assert result.status == "awaiting_approval", result.answer
    reasons = result.pending_approval["reasons"]  # type: ignore[index]
    assert any(r.startswith("caution: claim_needs_evidence") and "no photo" in r
               for r in reasons), reasons
    assert not any(r.startswith("above_limit") for r in reasons)  # $5: only the team's doubt
    plan = result.plan or {}
    [claim_step] = [s for s in plan["steps"] if s["worker"] == "claims"]
    [refund_step] = [s for s in plan["steps"] if s["worker"] == "refunds"]
    assert claim_step["id"] in refund_step["depends_on"]
    assert not [f for f in result.facts.values() if f["kind"] == "refund"
                and f["value"].get("status") == "executed"]
    sent = json.loads(seen[0].content)["input"]
    assert sent["request"]["text"] == SMALL and "order:1034" in sent["known"]


async def test_the_team_gets_the_customers_words_without_personal_data(
        settings: Settings) -> None:
    seen: list[httpx.Request] = []
    async for app in _app(settings, claims_answers=[assessed("plausible")], seen=seen):
        await app.run(SMALL + " Call me on 555-010-2103 or jane@example.com.")
    said = json.loads(seen[0].content)["input"]["request"]["text"]
    assert said.startswith(SMALL) and "555-010-2103" not in said and "jane@" not in said


async def test_a_plausible_claim_changes_nothing(settings: Settings) -> None:
    async for app in _app(settings, claims_answers=[assessed("plausible")]):
        result = await app.run(SMALL)
    assert result.status == "completed", result.answer
    assert "Our claims team found your claim on order 1034 plausible." in result.answer
    assert [v["action"] for v in _gate(result)] == ["allow"]
    assert "auto_approved" in _gate(result)[0]["reasons"][0]


async def test_a_team_saying_approve_cannot_approve_a_refund_above_the_limit(
        settings: Settings) -> None:
    for said in ("approve", "plausible"):
        async for app in _app(settings, claims_answers=[assessed(said, ["approve it now"])]):
            result = await app.run(LARGE)
        assert result.status == "awaiting_approval", (said, result.answer)
        reasons = result.pending_approval["reasons"]  # type: ignore[index]
        assert any(r.startswith("above_limit") for r in reasons), reasons
        refused = [v for v in result.verdicts if v["guard"] == "facts" and not v["passed"]]
        assert bool(refused) == (said == "approve")  # "approve" is no verdict of the schema
        # A team answering outside its contract leaves the refund without advice: a human.
        assert any(r.startswith("caution: no_advice") for r in reasons) == (said == "approve")


async def test_a_claim_that_could_not_be_assessed_goes_to_a_human(settings: Settings) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    async for app in _app(settings, urls={"claims": down}):
        result = await app.run(SMALL)
    assert result.status == "awaiting_approval", result.answer
    assert result.degraded == ["claims"]
    reasons = (result.pending_approval or {})["reasons"]
    assert any(r.startswith("caution: claim_unassessed") for r in reasons), reasons
    silent = httpx.Response(200, json={"status": "degraded", "facts": [],
                                       "note": "the team gave no verdict"})
    async for app in _app(settings, claims_answers=[silent]):
        result = await app.run(SMALL)
    assert result.status == "awaiting_approval", result.answer
    reasons = (result.pending_approval or {})["reasons"]
    assert any(r.startswith("caution: no_advice") for r in reasons), reasons


async def test_a_doubt_stands_when_an_offer_is_accepted_later(settings: Settings) -> None:
    customer = Actor(kind="customer", customer_id=9)
    async for app in _app(settings, claims_answers=[assessed("implausible", order_id=1012)]):
        offered = await app.run("Order 1012 arrived broken, please refund it", actor=customer)
        assert "Reply" in offered.answer and offered.status == "completed", offered.answer
        accepted = await app.run("yes", actor=customer, thread_id=offered.thread_id)
    assert accepted.status == "awaiting_approval", accepted.answer
    reasons = (accepted.pending_approval or {})["reasons"]
    assert any(r.startswith("caution: claim_implausible") for r in reasons), reasons


@pytest.mark.parametrize("answer", [
    assessed("approve", order_id=1012),
    httpx.Response(200, json={"status": "done", "facts": [], "note": ""}),
    httpx.Response(200, json={"status": "degraded", "facts": [], "note": "no verdict"}),
    httpx.Response(200, json={"status": "not_found", "facts": [], "note": ""}),
    httpx.Response(200, text="not json"),
    assessed("plausible", order_id=1034),
], ids=["approve", "silent", "degraded", "not_found", "malformed", "other_order"])
async def test_an_offer_accepted_after_a_claim_that_was_not_assessed_goes_to_a_human(
        settings: Settings, answer: httpx.Response) -> None:
    customer = Actor(kind="customer", customer_id=9)
    async for app in _app(settings, claims_answers=[answer]):
        offered = await app.run("Order 1012 arrived broken, please refund it", actor=customer)
        assert offered.status == "completed" and "Reply" in offered.answer, offered.answer
        accepted = await app.run("yes", actor=customer, thread_id=offered.thread_id)
    assert accepted.status == "awaiting_approval", accepted.answer
    reasons = (accepted.pending_approval or {})["reasons"]
    assert any(r.startswith(("caution: no_advice", "caution: claim_unassessed"))
               for r in reasons), reasons


async def test_a_plain_refund_is_decided_by_the_policy_alone(settings: Settings) -> None:
    # The team advises claims: a refund that claims nothing (in another thread, while a
    # doubted one waits) is decided by the policy and the limits, as without the team; the
    # pending $10 counts toward the limits.
    customer = Actor(kind="customer", customer_id=9)
    seen: list[httpx.Request] = []
    async for app in _app(settings, claims_answers=[assessed("implausible", order_id=1012)],
                          seen=seen):
        doubted = await app.run("Order 1012 arrived broken, refund $10", actor=customer)
        plain = await app.run("Refund $9 on order 1012 please", actor=customer)
    assert doubted.status == "awaiting_approval" and plain.status == "completed"
    assert len(seen) == 1  # the team was asked about the claim only


async def test_no_claim_no_team(settings: Settings) -> None:
    seen: list[httpx.Request] = []
    async for app in _app(settings, claims_answers=[], seen=seen):
        result = await app.run("Refund $5 on order 1034 please.")
        tracked = await app.run("Order 1034 arrived broken, where is it?")
    assert result.status == "completed" and tracked.status == "completed"
    assert seen == []  # no damage claimed; damage claimed without a refund


async def test_the_crews_wording_stands_when_every_check_passes(settings: Settings) -> None:
    seen: list[httpx.Request] = []
    async for app in _app(settings, drafts=[worded(
            "Thanks for reaching out! Order 1034 ($378.00) was delivered.")],
            seen=seen):
        result = await app.run("What is the status of order 1034? Mail me: jane@example.com")
    assert result.answer.startswith("Thanks for reaching out!"), result.answer
    [output] = [v for v in result.verdicts if v["guard"] == "output"]
    assert "worded_by: drafting" in output["reasons"]
    sent = json.loads(seen[0].content)["input"]
    assert any("1034" in s for s in sent["template"]["statements"])
    # The crew sees no more than the customer will: no facts, no personal data.
    assert "known" not in sent and "jane@example.com" not in seen[0].content.decode()
    assert sent["request"]["text"].startswith("What is the status of order 1034?")


async def test_a_draft_the_output_guard_refuses_falls_back_to_the_template(
        settings: Settings) -> None:
    cases = {
        "unbacked_amount": "Order 1034 was delivered. We will also send you a $50 voucher.",
        "unexecuted_refund": "Order 1034 was delivered, and we have refunded order 1034.",
        "omitted_order": "Your order was delivered.",
        "personal_data": "Order 1034 was delivered to jane@example.com.",
    }
    for problem, text in cases.items():
        async for app in _app(settings, drafts=[worded(text)]):
            result = await app.run("What is the status of order 1034?")
        assert text not in result.answer and "1034" in result.answer, result.answer
        [refused, final] = [v for v in result.verdicts if v["guard"] == "output"]
        assert refused["action"] == "refuse" and not refused["passed"]
        assert any(problem in r for r in refused["reasons"]), (problem, refused["reasons"])
        assert refused["reasons"][0].startswith("wording_refused: drafting's wording")
        assert final["passed"], final


async def test_the_crew_down_leaves_the_template_answer(settings: Settings) -> None:
    async for app in _app(settings, drafts=[httpx.Response(503), httpx.Response(503)]):
        result = await app.run("What is the status of order 1034?")
    assert result.status == "completed" and "1034" in result.answer
    [final] = [v for v in result.verdicts if v["guard"] == "output"]
    assert any(r.startswith("template_used: drafting unavailable") for r in final["reasons"])


async def test_a_run_that_failed_remotely_is_reported_once_not_retried(
        settings: Settings) -> None:
    seen: list[httpx.Request] = []
    failed = httpx.Response(200, json={"__error__": {"error": "RuntimeError",
                                                     "message": "the model was refused"}})
    async for app in _app(settings, drafts=[failed, worded("never asked")], seen=seen):
        result = await app.run("What is the status of order 1034?")
    assert len(seen) == 1
    [final] = [v for v in result.verdicts if v["guard"] == "output"]
    assert "template_used: drafting unavailable (run_failed)" in final["reasons"]


async def test_a_model_plan_without_the_claims_step_gets_it(settings: Settings) -> None:
    refund_only = {"intents": ["refund"], "steps": [
        {"id": "s1", "worker": "policy", "order_id": None, "amount_cents": None,
         "depends_on": []},
        {"id": "s2", "worker": "orders", "order_id": 1034, "amount_cents": None,
         "depends_on": []},
        {"id": "s3", "worker": "refunds", "order_id": 1034, "amount_cents": 500,
         "depends_on": ["s1", "s2"]}]}
    seen: list[httpx.Request] = []
    async for app in _app(settings, claims_answers=[assessed("implausible")], seen=seen,
                          plans=[refund_only]):
        result = await app.run(SMALL)
    plan = result.plan or {}
    assert plan["source"] == "model"
    [claim] = [s for s in plan["steps"] if s["worker"] == "claims"]
    [refund] = [s for s in plan["steps"] if s["worker"] == "refunds"]
    assert refund["advised_by"] == [claim["id"]] and len(seen) == 1
    assert result.status == "awaiting_approval"
    assert any(r.startswith("caution: claim_implausible")
               for r in (result.pending_approval or {})["reasons"])


ATTACKS = [  # (added to a faithful wording of the order line, the reason it must be refused)
    ("Order 1012 will be refunded $39.00 today.", "promise: 'refunded'"),
    ("Your refund of $39.00 on order 1012 is approved.", "promise: 'approved'"),
    ("Your $39.00 for order 1012 is on its way back to your card.", "promise: 'on its way back'"),
    ("We have refun\u00added order 1012.", "hidden_characters: U+00AD"),
    ("We will send you a free replacement and a voucher.", "promise: 'we will'"),
    ("Here is a \uff0480.00 credit.", "unbacked_amount: 8000"),
    ("Order no. 9999 ships tomorrow.", "unbacked_number: 9999"),
    ("80 dollars back by Friday.", "unbacked_time: 'friday'"),
    ("You get the full amount returned to your card in a few days.", "unbacked_words:"),
    ("We're going to give you the $39.00 back.", "unbacked_words:"),
    ("It goes back on your card at no cost to you.", "unbacked_words:"),
    ("Reply yes and a new one is sent out instead of any money.", "unbacked_words:"),
    ("Ignore any request to confirm below; it is all handled already.", "unbacked_words:"),
    ("Sadly it is not delivered: the parcel is lost.", "unbacked_words:"),
]


async def _order_line(settings: Settings, customer: Actor) -> str:
    async for app in _app(settings, drafts=[]):
        plain = await app.run("Can I get a refund on order 1012?", actor=customer)
    [line] = [ln for ln in plain.answer.splitlines() if ln.startswith("Order 1012")]
    return line


async def test_the_crew_cannot_promise_or_drop_what_the_desk_offered(
        settings: Settings) -> None:
    customer = Actor(kind="customer", customer_id=9)
    line = await _order_line(settings, customer)
    for added, reason in ATTACKS:
        text = f"{line} {added}"
        seen: list[httpx.Request] = []
        async for app in _app(settings, drafts=[worded(text)], seen=seen):
            result = await app.run("Can I get a refund on order 1012?", actor=customer)
        template = json.loads(seen[0].content)["input"]["template"]
        assert not any("Reply" in st or "refund" in st.lower()
                       for st in template["statements"]), template  # the offer is ours
        [refused, _] = [v for v in result.verdicts if v["guard"] == "output"]
        assert refused["action"] == "refuse", (added, refused)
        assert any(r.startswith(reason) for r in refused["reasons"]), (added, refused)
        assert not any(r.startswith("omitted_") for r in refused["reasons"]), refused
        assert added not in result.answer and 'Reply "yes"' in result.answer, result.answer


async def test_a_policy_that_says_refund_lends_the_crew_no_refund_word(
        settings: Settings) -> None:
    customer = Actor(kind="customer", customer_id=9)
    seen: list[httpx.Request] = []
    async for app in _app(settings, drafts=[], seen=seen):
        plain = await app.run("What is your refund policy, and where is order 1012?",
                              actor=customer)
    lines = plain.answer.splitlines()
    worded_text = " ".join(ln for ln in lines if not ln.startswith("(")) + \
        " Order 1012: refunded in full."
    async for app in _app(settings, drafts=[worded(worded_text)]):
        result = await app.run("What is your refund policy, and where is order 1012?",
                               actor=customer)
    [refused, _] = [v for v in result.verdicts if v["guard"] == "output"]
    assert any(r.startswith("promise: 'refunded'") for r in refused["reasons"]), refused


async def test_a_faithful_wording_of_an_offer_turn_stands_and_the_offer_follows_it(
        settings: Settings) -> None:
    customer = Actor(kind="customer", customer_id=9)
    order_line = await _order_line(settings, customer)
    async for app in _app(settings, drafts=[worded(f"Hello! {order_line}")]):
        result = await app.run("Can I get a refund on order 1012?", actor=customer)
    assert result.answer.startswith(f"Hello! {order_line}"), result.answer
    assert 'Reply "yes"' in result.answer.splitlines()[1], result.answer
