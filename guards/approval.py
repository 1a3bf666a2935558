"""Approval guard: before any payment, apply the refund policy, the limits and a human's word.

- outside the policy in effect at the request's time, or above what was paid less earlier
  refunds -> refused, citing the policy version;
- above `INTERLOCK_AUTO_APPROVE_CENTS`, or with what was already refunded or proposed on the
  order (or for the customer) in the approval window above its limit, or the same amount on
  the same order again within the duplicate window, or no amount stated -> `interrupt()` for a
  human (support staff only); the interrupt lives in the checkpoint, so it survives a restart
  and resumes right here;
- otherwise -> allowed automatically.

The limits are counted on the effects journal in one transaction with noting this proposal,
so requests racing each other cannot both slip under a limit. An answer must carry the digest
of the proposal it approves: an answer to anything else (a proposal that took its place, one
no longer pending) is not taken, nothing of it is saved, and the proposal keeps waiting with
the reason in `refused_answer`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, ClassVar, Self

from langgraph.config import get_config
from langgraph.errors import GraphInterrupt
from langgraph.runtime import Runtime
from langgraph.types import Interrupt, interrupt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from graphs.core.actors import is_staff, resolve_actor
from graphs.core.clock import Clock, iso, parse_iso
from graphs.core.state import (
    ApprovalDecision,
    ApprovalRequest,
    Event,
    InterlockContext,
    RefundProposal,
    Verdict,
    WorkerState,
)
from guards.config import GuardSettings
from tools.effects import Exposure, Proposal
from tools.errors import DependencyError
from tools.governor import CallContext
from tools.spans import thread_of
from tools.toolbox import Toolbox

__all__ = ["ApprovalAnswer", "answer_schema", "approval_digest", "limit_reasons",
           "make_approval_guard", "policy_reasons"]

GUARD = "approval"


def _money(cents: int, currency: str) -> str:
    return f"${cents / 100:,.2f}" if currency == "USD" else f"{cents / 100:,.2f} {currency}"


def policy_reasons(p: RefundProposal) -> list[str]:
    """Why the policy forbids this refund (empty: it allows it)."""
    version = p["policy_version"]
    money = _money
    reasons: list[str] = []
    if version is None or p["return_window_days"] is None:
        return ["no_policy: no refund policy was in effect at the time of the request"]
    cite = f"(refund policy {version})"
    left = p["paid_cents"] - p["refunded_cents"]
    status = p["order_status"]
    if status == "cancelled" or p["paid_cents"] == 0:
        reasons.append(f"not_charged: order {p['order_id']} was cancelled and never charged "
                       f"{cite}")
    elif status == "shipped":
        reasons.append(f"in_transit: order {p['order_id']} is in transit; it can be refunded "
                       f"once delivered {cite}")
    elif status in ("delivered", "partially_refunded"):
        delivered = p["delivered_at"]
        if delivered is None:
            reasons.append(f"no_delivery_date: order {p['order_id']} has no delivery date {cite}")
        else:
            days = p["return_window_days"]
            closes = parse_iso(delivered) + timedelta(days=days)
            if parse_iso(p["requested_at"]) > closes:
                reasons.append(f"outside_window: order {p['order_id']} was delivered on "
                               f"{delivered[:10]}; the {days}-day return window closed on "
                               f"{iso(closes)[:10]} {cite}")
    if p["amount_cents"] > left and not reasons:
        reasons.append(f"exceeds_paid: {money(p['amount_cents'], p['currency'])} is more than "
                       f"the {money(max(left, 0), p['currency'])} left of what was paid on order "
                       f"{p['order_id']} {cite}")
    return reasons


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:g} h"


def limit_reasons(p: RefundProposal, exposure: Exposure, settings: GuardSettings, *,
                  amount_stated: bool) -> list[str]:
    """Why this refund needs a human (empty: it may be approved automatically).

    `exposure` is what the journal knows of the order's and the customer's other refunds in
    the window; the order's refunds the payments service made without the journal (another
    system, a person) are added from `p["recent"]`.
    """
    money = _money
    cur = p["currency"]
    amount = p["amount_cents"]
    order = p["order_id"]
    reasons: list[str] = []
    if amount > settings.auto_approve_cents:
        reasons.append(f"above_limit: {money(amount, cur)} is above the auto-approval limit of "
                       f"{money(settings.auto_approve_cents, cur)}")
    if not amount_stated:
        reasons.append(f"amount_not_stated: the request named no amount; a human confirms the "
                       f"full {money(amount, cur)}")
    known = set(exposure.known_results)
    external = [r for r in p.get("recent") or [] if r["refund_id"] not in known]
    since = parse_iso(p["requested_at"]) - timedelta(seconds=settings.approval_window_s)
    on_order = exposure.subject_cents + sum(int(r["amount_cents"]) for r in external
                                            if parse_iso(r["created_at"]) >= since)
    window = _hours(settings.approval_window_s)
    if on_order + amount > settings.auto_approve_order_cents:
        reasons.append(f"order_limit: {money(on_order, cur)} was already refunded or asked for on "
                       f"order {order} in the last {window}; with {money(amount, cur)} that is "
                       f"{money(on_order + amount, cur)}, above the "
                       f"{money(settings.auto_approve_order_cents, cur)} allowed without a human")
    if (customer := p.get("customer_id")) is not None and (
            exposure.principal_cents + amount > settings.auto_approve_customer_cents):
        reasons.append(f"customer_limit: {money(exposure.principal_cents, cur)} was already "
                       f"refunded or asked for on customer {customer}'s orders in the last "
                       f"{window}; with {money(amount, cur)} that is above the "
                       f"{money(settings.auto_approve_customer_cents, cur)} allowed without a "
                       f"human")
    if settings.duplicate_window_s > 0:
        since = parse_iso(p["requested_at"]) - timedelta(seconds=settings.duplicate_window_s)
        twins = [f"refund {r['refund_id']} at {r['created_at'][:16]}" for r in external
                 if int(r["amount_cents"]) == amount and parse_iso(r["created_at"]) >= since]
        twins += [f"{'a refund' if d['outcome'] == 'executed' else 'a request'} at "
                  f"{d['at'][:16]}" for d in exposure.duplicates]
        if twins:
            reasons.append(f"likely_duplicate: {money(amount, cur)} on order {order} was already "
                           f"refunded or asked for ({'; '.join(twins[:3])}); a human confirms "
                           f"this is a new request")
    return reasons


def approval_digest(request: ApprovalRequest, key: str) -> str:
    """`sha256:<hex>` of what a reviewer approves: the payment (its key and terms) and who asked.

    The reasons are not part of it: their figures may move while the proposal waits, and what
    moved is checked again once a human has answered.
    """
    shown = {"kind": request["kind"], "key": key, "step_id": request["step_id"],
             "order_id": request["order_id"], "amount_cents": request["amount_cents"],
             "currency": request["currency"], "policy_version": request["policy_version"],
             "requested_by": dict(request["requested_by"])}
    body = json.dumps(shown, sort_keys=True, separators=(",", ":"))
    return f"sha256:{hashlib.sha256(body.encode()).hexdigest()}"


class ApprovalAnswer(BaseModel):
    """A reviewer's answer to one approval request (the interrupt's `response_schema`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    approved: bool
    """Whether the refund may be paid."""
    note: str = Field(default="", max_length=500)
    """A note for the record."""
    digest: str = Field(max_length=80)
    """The digest of the proposal answered (from the interrupt's value)."""
    expected: ClassVar[str] = ""
    by_staff: ClassVar[bool] = False

    @model_validator(mode="after")
    def _bound(self) -> Self:
        if not self.by_staff:
            raise ValueError("approver_not_staff: only support staff may answer a refund "
                             "approval")
        if self.digest != self.expected:
            raise ValueError(f"stale_answer: the answer names proposal {self.digest[:19]}…, "
                             f"but the proposal waiting is {self.expected[:19]}…; read the "
                             f"thread's interrupts and answer the one you reviewed")
        return self


def answer_schema(digest: str, *, by_staff: bool) -> type[ApprovalAnswer]:
    """The answer schema of one proposal: its digest, and whether the answering run is staff's."""
    schema: type[ApprovalAnswer] = type("ApprovalAnswer", (ApprovalAnswer,),
                                        {"expected": digest, "by_staff": by_staff,
                                         "__module__": __name__})
    return schema


def _why(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0] if errors else {"msg": str(exc), "loc": ()}
    where = ".".join(str(p) for p in first.get("loc", ()))
    message = str(first.get("msg", "")).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _ask(request: ApprovalRequest, runtime: Runtime[InterlockContext]) -> ApprovalAnswer:
    """Ask a human; an answer that is not for this proposal is not taken.

    A refused answer is never saved (LangGraph validates it against `response_schema` before
    it records anything), and the same interrupt is raised again with the reason, so the
    proposal keeps waiting under the same id for an answer that names it.
    """
    schema = answer_schema(request["digest"], by_staff=is_staff(resolve_actor(runtime)))
    try:
        answer: ApprovalAnswer = interrupt(request, response_schema=schema)
    except ValidationError as exc:
        namespace = str(get_config()["configurable"].get("checkpoint_ns", ""))
        again = ApprovalRequest(**{**request, "refused_answer": _why(exc)})
        raise GraphInterrupt((Interrupt.from_ns(
            again, namespace, response_schema=schema.model_json_schema()),)) from None
    return answer


async def _recheck(proposal: RefundProposal, toolbox: Toolbox, ctx: CallContext
                   ) -> list[str]:
    """What changed while a human decided that stops the payment (empty: nothing did)."""
    order = await toolbox.store.order(proposal["order_id"], actor=proposal["requested_by"],
                                      ctx=ctx)
    try:
        earlier = await toolbox.payments.refunds(proposal["order_id"], ctx)
    except DependencyError as exc:
        return [f"payments_unavailable: could not re-check earlier refunds after the "
                f"approval ({exc.reason}); no money was moved"]
    if order is None:
        return [f"order_gone: order {proposal['order_id']} is no longer visible"]
    seen = sum(r.amount_cents for r in earlier)
    was = proposal.get("seen_cents", proposal["refunded_cents"])
    fresh = RefundProposal(**{**proposal, "order_status": order.status,
                              "paid_cents": order.paid_cents,
                              "refunded_cents": proposal["refunded_cents"] + seen - was})
    if problems := policy_reasons(fresh):
        return problems
    if seen != was:
        return [f"refunds_changed: refunds on order {proposal['order_id']} came to "
                f"{_money(was, proposal['currency'])} when approval was asked and come to "
                f"{_money(seen, proposal['currency'])} now; ask again"]
    return []


def _request(proposal: RefundProposal, reasons: Sequence[str], settings: GuardSettings
             ) -> ApprovalRequest:
    request = ApprovalRequest(
        kind="refund_approval", step_id=proposal["step_id"], order_id=proposal["order_id"],
        amount_cents=proposal["amount_cents"], currency=proposal["currency"],
        limit_cents=settings.auto_approve_cents,
        reason=reasons[0] if reasons else "escalated: decided earlier to ask a human",
        reasons=list(reasons), policy_version=proposal["policy_version"] or "",
        requested_by=proposal["requested_by"], requested_at=proposal["requested_at"])
    request["digest"] = approval_digest(request, proposal.get("idempotency_key", ""))
    return request


def make_approval_guard(settings: GuardSettings, clock: Clock, toolbox: Toolbox) -> Any:
    """The approval guard node, for worker subgraphs with side effects (`scratch.proposal`).

    After a human decision (which may come hours later) it checks the order and the earlier
    refunds again before allowing the payment: what was true when the human was asked may not
    be true any more.
    """

    async def approval_guard(state: WorkerState, runtime: Runtime[InterlockContext]
                             ) -> dict[str, Any]:
        proposal: RefundProposal = state["scratch"]["proposal"]
        turn = state["request"]["turn"]
        step_id = proposal["step_id"]
        key = proposal.get("idempotency_key", "")
        fact_ids = [f"order:{proposal['order_id']}", "policy:refund"]
        fresh_deadline = clock.now() + timedelta(seconds=settings.deadline_s)
        ctx = CallContext.until(fresh_deadline, clock, step_id=step_id,
                                thread_id=thread_of(runtime))
        escalated = False
        verdicts: list[Verdict] = []
        made = await toolbox.effects.entry(key, ctx) if key else None
        # A re-run, replay, fork or copy of a paid request: the same key gets the original
        # refund back from the service, and nothing moves again. What a human had to approve
        # the first time is put to a human again; nothing else is asked.
        already = made is not None and made["outcome"] == "executed"
        if already and made is not None and made["decision"] != "escalate":
            refund_id = (made.get("result") or {}).get("refund_id", "")
            decision = ApprovalDecision(
                decision="allow", approver=None, escalated=False, decided_at=iso(clock.now()),
                reasons=[f"already_made: this payment was made before under the same key "
                         f"(refund {refund_id}); the service returns it and nothing moves "
                         f"again"])
        elif not already and (reasons := policy_reasons(proposal)):
            decision = ApprovalDecision(
                decision="refuse", reasons=reasons, approver=None, escalated=False,
                decided_at=iso(clock.now()))
        else:
            stated = state["step"]["amount_cents"] is not None
            customer = proposal.get("customer_id")
            exposure, label = await toolbox.effects.propose(
                Proposal(key=key, dependency="payments", effect_id=proposal.get("effect_id", ""),
                         subject=f"order:{proposal['order_id']}",
                         principal=f"customer:{customer}" if customer is not None else "",
                         impact_cents=proposal["amount_cents"],
                         request={"order_id": proposal["order_id"],
                                  "amount_cents": proposal["amount_cents"],
                                  "currency": proposal["currency"],
                                  "policy_version": proposal["policy_version"]}),
                window_s=settings.approval_window_s,
                duplicate_window_s=settings.duplicate_window_s,
                decide=lambda seen: "escalate" if limit_reasons(
                    proposal, seen, settings, amount_stated=stated) else "auto",
                ctx=ctx)
            if label == "escalate":
                escalated = True
                whys = limit_reasons(proposal, exposure, settings, amount_stated=stated)
                request = _request(proposal, whys, settings)
                verdicts.append(Verdict(
                    guard=GUARD, passed=False, action="escalate",
                    reasons=list(request.get("reasons") or [request["reason"]]),
                    fact_ids=fact_ids, step_id=step_id, turn=turn, at=proposal["requested_at"]))
                answer = _ask(request, runtime)
                approver = resolve_actor(runtime)
                # A human decision starts a fresh deadline for the re-check and the payment.
                fresh_deadline = clock.now() + timedelta(seconds=settings.deadline_s)
                ctx.events.append(Event(
                    at=iso(clock.now()), kind="decision", dependency=None,
                    thread_id=thread_of(runtime), step_id=step_id,
                    detail={"answer": answer.model_dump(), "approver": approver,
                            "digest": request["digest"]}))
                note = f": {answer.note}" if answer.note else ""
                decision = ApprovalDecision(
                    decision="allow" if answer.approved else "rejected", approver=approver,
                    escalated=True, decided_at=iso(clock.now()),
                    reasons=[("approved_by_staff" if answer.approved else "rejected_by_staff")
                             + note])
                if answer.approved and not already:
                    check = CallContext.until(fresh_deadline, clock, step_id=step_id,
                                              thread_id=thread_of(runtime))
                    problems = await _recheck(proposal, toolbox, check)
                    ctx.events.extend(check.events)
                    if problems:
                        decision = ApprovalDecision(
                            decision="refuse", approver=approver, escalated=True,
                            decided_at=iso(clock.now()),
                            reasons=[f"changed_while_waiting: {p}" for p in problems])
            else:
                decision = ApprovalDecision(
                    decision="allow", approver=None, escalated=False,
                    decided_at=iso(clock.now()),
                    reasons=[f"auto_approved: within the "
                             f"{_money(settings.auto_approve_cents, proposal['currency'])} "
                             f"limit, the order's and the customer's limits for the last "
                             f"{_hours(settings.approval_window_s)}, and refund policy "
                             f"{proposal['policy_version']}"])
            if decision["decision"] != "allow" and not already:  # moved nothing: not counted
                await toolbox.effects.finish(
                    key, "rejected" if decision["decision"] == "rejected" else "refused")
        verdicts.append(Verdict(
            guard=GUARD, passed=decision["decision"] == "allow",
            action="allow" if decision["decision"] == "allow" else "refuse",
            reasons=decision["reasons"], fact_ids=fact_ids, step_id=step_id, turn=turn,
            at=decision["decided_at"]))
        scratch: dict[str, Any] = {"approval": decision}
        if escalated:
            scratch["deadline_at"] = iso(fresh_deadline)
        return {"scratch": scratch, "verdicts": verdicts, "events": ctx.events}

    return approval_guard
