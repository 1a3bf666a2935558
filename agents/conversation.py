"""Remembering: at the end of every turn, what the thread is about now.

It runs in the last answer stage's step (the output guard's, once the answer is settled; no
superstep of its own) and is the only writer of the `subject` state key: the orders the
request's actor named or was answered about (only those a fact of the turn showed to exist
for them: one the store did not find, or whose lookup never ran, is not remembered), the
amounts they named (for the record only), and the offer the answer made, if one was made and
shown ("I can refund $39.00 on order 1012"), standing for the next message, in this thread
only, for `offer_ttl_s` seconds. The planner and the plan guard read it on the next turn
(`graphs.core.conversation`).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from langchain_core.messages import AIMessage

from graphs.core.answers import money
from graphs.core.clock import parse_iso
from graphs.core.conversation import make_offer, remember
from graphs.core.errors import InputError
from graphs.core.freshness import scope_of
from graphs.core.plans import Mentions, mentions
from graphs.core.state import Fact, InterlockState, Offer

__all__ = ["make_remember"]


def _answer(state: InterlockState) -> str:
    for message in reversed(state.get("messages", [])):
        if isinstance(message, AIMessage):
            return message.content if isinstance(message.content, str) else str(message.content)
    return ""


def _shown(fact: Fact, answer: str) -> bool:
    """Whether the answer the requester got shows the offer (its amount and order)."""
    v = fact["value"]
    if not isinstance(v.get("order_id"), int) or not isinstance(v.get("amount_cents"), int):
        return False
    return str(v["order_id"]) in answer and money(v["amount_cents"], v.get("currency")) in answer


def make_remember(*, offer_ttl_s: float, side_effects: Collection[str]) -> Any:
    """`remember(state, thread_id) -> {"subject": ...}`: the subject after the turn's answer."""

    async def remember_node(state: InterlockState, thread: str | None) -> dict[str, Any]:
        request = state.get("request")
        if not request or not request["text"]:  # refused at intake: nothing was asked
            subject = state.get("subject")
            return {"subject": {**subject, "offer": None}} if subject else {}
        by = scope_of(request["actor"])
        plan = state.get("plan")
        results = state.get("results", {})
        facts = state.get("facts", {})
        answered: dict[int, list[str]] = {}
        missing: set[int] = set()
        seen: set[int] = set()  # orders a fact of this turn showed to exist for the viewer
        offers: list[Fact] = []
        answer = _answer(state)
        for step in plan["steps"] if plan else []:
            result = results.get(step["id"])
            if result is None or step["order_id"] is None:
                continue
            if result["status"] == "not_found":
                missing.add(step["order_id"])
                continue
            kinds = answered.setdefault(step["order_id"], [])
            for fid in result["fact_ids"]:
                if (fact := facts.get(fid)) is None:
                    continue
                kinds.append(fact["kind"])
                found = fact["value"].get("found")
                if found is False:
                    missing.add(step["order_id"])
                elif found is True or step["worker"] in side_effects:
                    seen.add(step["order_id"])  # a side effect's fact: its worker found it
                if step["worker"] in side_effects and fact["value"].get("status") == "proposed":
                    offers.append(fact)
        try:
            said = mentions(request["text"])
        except InputError:
            said = Mentions([], [])
        offer: Offer | None = None
        if len(offers) == 1 and _shown(offers[0], answer):
            fact = offers[0]
            v = fact["value"]
            offer = make_offer(
                step_id=fact["step_id"], worker=fact["worker"], order_id=int(v["order_id"]),
                amount_cents=int(v["amount_cents"]), currency=str(v.get("currency") or "USD"),
                policy_version=v.get("policy_version"),
                summary=str(v.get("summary") or f"{fact['worker']}: "
                            f"{money(v['amount_cents'], v.get('currency'))} on order "
                            f"{v['order_id']}"),
                # When the worker made it (recorded, so a replay remembers the same offer).
                by=by, turn=request["turn"], now=parse_iso(fact["as_of"]), ttl_s=offer_ttl_s,
                thread=thread)
        subject = remember(state.get("subject"), turn=request["turn"], by=by,
                           answered={o: k for o, k in answered.items()
                                     if o in seen and o not in missing},
                           named=said.order_ids, amounts=said.amounts_cents, offer=offer)
        return {"subject": subject}

    remember_node.__name__ = "remember"
    return remember_node
