"""The default planner: deterministic rules, no model, no network.

Recognises order status, shipment tracking, refund requests and policy questions (and mixes of
them), reads order numbers and amounts, and declares which steps wait for which.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from graphs.core.conversation import Resolution
from graphs.core.errors import InputError
from graphs.core.plans import Mentions, compute_waves, mentions
from graphs.core.state import Offer, Plan, PlanStep

if TYPE_CHECKING:
    from agents.base import WorkerSpec

__all__ = ["RuleContext", "rules_plan", "unsupported_asks", "with_advisors"]

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
_ORDER = re.compile(r"\border|\bstatus\b|\bpaid\b|\bitems?\b|\btotal\b|\bcancel|\bcost\b"
                    r"|\bprice\b|\bhow much\b", re.IGNORECASE)


_UNSUPPORTED = (
    # The request, not the state: "cancel (order 1050)", "cancelling it", "a cancellation",
    # but not "why was it cancelled?", "noise-cancelling headphones" or "cancellation policy".
    ("cancel an order", re.compile(r"(?<![\w-])(?:cancel(?:l?ing)?|cancellation(?!\s+polic))\b",
                                   re.IGNORECASE)),
    ("change a delivery address", re.compile(
        r"\b(?:change|update|correct|edit)\b[^.?!]{0,40}\baddress|\baddress\b[^.?!]{0,20}"
        r"\bchange", re.IGNORECASE)),
    # "exchange it", "swap it", "replace it", "I want a replacement", but not "where is the
    # replacement for order 1042?" (a status question about one already sent).
    ("exchange an item", re.compile(
        r"\b(?:exchange|swap|replace)\b|\b(?:want|need|like|get|send(?: me)?|ask for)\s+"
        r"(?:a\s+|another\s+)?replacement\b", re.IGNORECASE)),
)
"""What customers ask that this desk does not do (said so plainly, with what it can do)."""


@dataclass(slots=True)
class RuleContext:
    """What a worker's planning rule (`WorkerSpec.rule`) sees, and how it adds its steps."""

    text: str
    """The request."""
    turn: int
    """The request's turn (step ids are `t<turn>.s<n>`)."""
    found: Mentions
    """The order numbers and amounts the request mentions."""
    steps: list[PlanStep] = field(default_factory=list)
    """The steps planned so far."""
    intents: list[str] = field(default_factory=list)
    """The intents recognised so far."""

    def add(self, worker: str, *, order_id: int | None = None, amount: int | None = None,
            args: dict[str, Any] | None = None, depends_on: list[str] | None = None) -> str:
        """Plan a step of `worker`; returns its id (for other steps to depend on)."""
        taken = [int(n) for s in self.steps if (n := s["id"].rpartition(".s")[2]).isdigit()]
        step_id = f"t{self.turn}.s{max(taken, default=0) + 1}"
        step = PlanStep(id=step_id, worker=worker, order_id=order_id, amount_cents=amount,
                        depends_on=list(depends_on or []))
        if args:
            step["args"] = dict(args)
        self.steps.append(step)
        return step_id

    def step_of(self, worker: str, order_id: int | None = None) -> str | None:
        """The id of a step already planned for `worker` (and that order), if any."""
        return next((s["id"] for s in self.steps if s["worker"] == worker
                     and (order_id is None or s["order_id"] == order_id)), None)

    def intent(self, name: str) -> None:
        """Record an intent (once)."""
        if name not in self.intents:
            self.intents.append(name)


def unsupported_asks(text: str) -> list[str]:
    """What the request asks that the desk cannot do (`cancel an order`, ...)."""
    return [what for what, pattern in _UNSUPPORTED if pattern.search(text)]


def _which(orders: Sequence[int]) -> str:
    named = [f"#{o}" for o in orders]
    listed = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " or " + named[-1]
    return (f"Which order do you mean: {listed}? Please say it again with the order number, "
            f"for example 'where is {named[0]}?'.")


def _cannot_confirm(refusal: str) -> str:
    code, _, detail = refusal.partition(": ")
    if code == "nothing_to_confirm":
        return ("There is nothing waiting for your confirmation. To ask for a refund, say for "
                "example 'Refund $25 on order 1042'.")
    return (f"I can't take that as a yes: {detail}. Nothing was refunded; ask again and I will "
            f"check it once more.")


def _counter_plan(offer: Offer, amount: int, turn: int, workers: Sequence[WorkerSpec]) -> Plan:
    """Offer `amount` instead of what `offer` offered: the same worker, proposing only."""
    plan = _confirmation_plan(Offer(**{**offer, "amount_cents": amount}), turn, workers)
    for step in plan["steps"]:
        if step.pop("confirms", None) is not None:
            step["offer_only"] = True
    return Plan(**{**plan, "intents": ["counter_offer"]})


def _confirmation_plan(offer: Offer, turn: int, workers: Sequence[WorkerSpec]) -> Plan:
    """Carry out a confirmed offer: its worker's step, after the steps it needs facts from."""
    ctx = RuleContext(text="", turn=turn, found=Mentions([offer["order_id"]], []))
    spec = next((w for w in workers if w.name == offer["worker"]), None)
    if spec is None:  # the worker that made the offer is not in this graph any more
        return Plan(source="rules", intents=["confirm"], steps=[], waves=[],
                    asks=[_cannot_confirm("offer_lapsed: the worker that made it is gone")])
    owners = {kind: w for w in workers for kind in w.owns}
    needed = []
    for kind in spec.requires:
        owner = owners.get(kind)
        if owner is not None and owner.name not in [s["worker"] for s in ctx.steps]:
            needed.append(ctx.add(owner.name, order_id=offer["order_id"]
                                  if owner.needs_order else None))
    ctx.add(spec.name, order_id=offer["order_id"], amount=offer["amount_cents"],
            depends_on=needed)
    ctx.steps[-1]["confirms"] = offer
    return Plan(source="rules", intents=["confirm"], steps=ctx.steps,
                waves=compute_waves(ctx.steps))


def rules_plan(text: str, *, turn: int, workers: Sequence[WorkerSpec] = (),
               carried: Resolution | None = None) -> Plan:
    """Plan `text` with rules; an ambiguous or malformed request raises InputError.

    The reference domain's rules first (orders, shipping, policy, refunds), then the rule of
    every other worker given (`WorkerSpec.rule`), in their order. `carried` is what the
    message refers back to in the thread's subject: a confirmed offer, or the earlier order a
    request that names none is about (several that fit: a question back, never a guess).
    """
    carried = carried or Resolution()
    if carried.confirms is not None:
        return _confirmation_plan(carried.confirms, turn, workers)
    if carried.refusal is not None:
        return Plan(source="rules", intents=["confirm"], steps=[], waves=[],
                    asks=[_cannot_confirm(carried.refusal)])
    found = mentions(text)
    if carried.open_offer is not None and len(found.amounts_cents) == 1:
        # An amount in answer to the desk's offer ("no, just $5 please"): offered in its turn.
        return _counter_plan(carried.open_offer, found.amounts_cents[0], turn, workers)
    refund = bool(_REFUND.search(text)) and not _NOT_A_REFUND.search(text)
    policy_asked = bool(_POLICY.search(text))
    track = bool(_TRACK.search(text))
    needs_order = refund or track or bool(_ORDER.search(text))
    if not found.order_ids and needs_order and carried.order_ids:
        found = Mentions(list(carried.order_ids), found.amounts_cents)
    elif not found.order_ids and needs_order and len(carried.ambiguous) > 1:
        return Plan(source="rules", intents=["clarify"], steps=[], waves=[],
                    asks=[_which(carried.ambiguous)])
    ctx = RuleContext(text=text, turn=turn, found=found)
    if refund and found.amounts_cents and len(found.order_ids) != 1:
        raise InputError("Please name exactly one order number with a refund amount, "
                         "e.g. 'Refund $25 on order 1042'.", field="message")
    if len(found.amounts_cents) > 1:
        raise InputError("Please ask for one amount per refund.", field="amount")
    amount = found.amounts_cents[0] if found.amounts_cents else None
    others = [w for w in workers if w.rule is not None]
    policy_step = ctx.add("policy") if policy_asked or refund else None
    if policy_asked:
        ctx.intent("policy")
    for order_id in found.order_ids:
        order_step = ctx.add("orders", order_id=order_id)
        if track:
            ctx.add("shipping", order_id=order_id)
        if refund:
            assert policy_step is not None
            ctx.add("refunds", order_id=order_id, amount=amount,
                    depends_on=[order_step, policy_step])
    if found.order_ids:
        ctx.intent("order_status")
        if track:
            ctx.intent("tracking")
        if refund:
            ctx.intent("refund")
    planned = len(ctx.steps)
    for worker in others:
        assert worker.rule is not None
        worker.rule(ctx)
    extended = len(ctx.steps) > planned
    if amount is not None and not refund and not any(
            s["amount_cents"] == amount for s in ctx.steps):
        raise InputError("I read an amount but no refund request; to ask for a refund, say "
                         "e.g. 'Refund $25 on order 1042'.", field="amount")
    if not found.order_ids and not extended and needs_order:
        ctx.intent("clarify")
    if not extended and unsupported_asks(text):
        ctx.intent("unsupported")
    if not ctx.intents:
        ctx.intent("unknown")
    return Plan(source="rules", intents=ctx.intents, steps=ctx.steps,
                waves=compute_waves(ctx.steps))


def with_advisors(plan: Plan, text: str, *, turn: int, workers: Sequence[WorkerSpec]) -> Plan:
    """A plan with the steps advisors' rules add to it (a claims check before a refund).

    A model planning a refund may leave out the advisor that would make it more cautious; the
    advisors' own rules (`WorkerSpec.caution` and `.rule`) run over its plan as over the rules
    planner's, so advice does not depend on who planned.
    """
    advisors = [w for w in workers if w.caution is not None and w.rule is not None]
    if not advisors:
        return plan
    found = mentions(text)
    orders = sorted({*found.order_ids, *(s["order_id"] for s in plan["steps"]
                                          if s["order_id"] is not None)})
    ctx = RuleContext(text=text, turn=turn, found=Mentions(orders, found.amounts_cents),
                      steps=[PlanStep(**s) for s in plan["steps"]],
                      intents=list(plan["intents"]))
    for advisor in advisors:
        assert advisor.rule is not None
        advisor.rule(ctx)
    if len(ctx.steps) == len(plan["steps"]):
        return plan
    return Plan(**{**plan, "intents": ctx.intents, "steps": ctx.steps,
                   "waves": compute_waves(ctx.steps)})
