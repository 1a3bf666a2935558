"""The default planner: deterministic rules, no model, no network.

Recognises order status, shipment tracking, refund requests and policy questions (and mixes of
them), reads order numbers and amounts, and declares which steps wait for which.
"""

from __future__ import annotations

import re

from graphs.errors import InputError
from graphs.plans import compute_waves, mentions
from graphs.state import Plan, PlanStep

__all__ = ["rules_plan"]

_REFUND = re.compile(r"\brefund(?!\s+polic)|\bmoney back\b|\breimburs|\bcharge ?back\b"
                     r"|\breturn\s+(?:it|this|them|my|the|order)\b", re.IGNORECASE)
# Talking about a refund is not asking for one: a question about one, or a refusal of one, is
# answered with the order's status and never becomes a payment.
_NOT_A_REFUND = re.compile(
    r"\b(?:don'?t|do not|never|no need to|not|without)\b[^.?!]{0,25}\b(?:refund|reimburs|return)"
    r"|\bno refund|\brefund(?:ed)?\b[^.?!]{0,25}\bstatus\b|\bstatus\b[^.?!]{0,25}\brefund"
    r"|\b(?:has|have|had|was|were|is|are|did|got)\b[^.?!]{0,40}\b(?:refunded|reimbursed)\b"
    r"|\bwhen\b[^.?!]{0,30}\brefund|\bhow much\b[^.?!]{0,30}\brefund", re.IGNORECASE)
_POLICY = re.compile(r"\bpolic(?:y|ies)\b|\breturn window\b|\bhow long\b[^.?!]{0,80}\breturn"
                     r"|\breturns\b|\bwarrant", re.IGNORECASE)
_TRACK = re.compile(r"\bwhere\b|\btrack|\bshipp|\bshipment|\bdeliver|\barriv|\bcarrier\b"
                    r"|\bpackage\b|\bparcel\b|\beta\b|\bwhen will\b|\bin transit\b",
                    re.IGNORECASE)
_ORDER = re.compile(r"\border|\bstatus\b|\bpaid\b|\bitems?\b|\btotal\b|\bcancel", re.IGNORECASE)


def rules_plan(text: str, *, turn: int) -> Plan:
    """Plan `text` with rules; an ambiguous or malformed request raises InputError."""
    found = mentions(text)
    refund = bool(_REFUND.search(text)) and not _NOT_A_REFUND.search(text)
    policy_asked = bool(_POLICY.search(text))
    track = bool(_TRACK.search(text))
    intents: list[str] = []
    steps: list[PlanStep] = []

    def add(worker: str, order_id: int | None = None, amount: int | None = None,
            depends_on: list[str] | None = None) -> str:
        step_id = f"t{turn}.s{len(steps) + 1}"
        steps.append(PlanStep(id=step_id, worker=worker, order_id=order_id,
                              amount_cents=amount, depends_on=depends_on or []))
        return step_id

    if refund and found.amounts_cents and len(found.order_ids) != 1:
        raise InputError("Please name exactly one order number with a refund amount, "
                         "e.g. 'Refund $25 on order 1042'.", field="message")
    if len(found.amounts_cents) > 1:
        raise InputError("Please ask for one amount per refund.", field="amount")
    amount = found.amounts_cents[0] if found.amounts_cents else None
    if amount is not None and not refund:
        raise InputError("I read an amount but no refund request; to ask for a refund, say "
                         "e.g. 'Refund $25 on order 1042'.", field="amount")
    policy_step = add("policy") if policy_asked or refund else None
    if policy_asked:
        intents.append("policy")
    for order_id in found.order_ids:
        order_step = add("orders", order_id)
        if track:
            add("shipping", order_id)
        if refund:
            assert policy_step is not None
            add("refunds", order_id, amount, [order_step, policy_step])
    if found.order_ids:
        intents.append("order_status")
        if track:
            intents.append("tracking")
        if refund:
            intents.append("refund")
    elif refund or track or _ORDER.search(text):
        intents.append("clarify")
    if not intents:
        intents.append("unknown")
    return Plan(source="rules", intents=intents, steps=steps, waves=compute_waves(steps))
