"""Approval guard: before any payment, apply the refund policy and the approval limit.

- outside the policy in effect at the request's time, or above what was paid less earlier
  refunds -> refused, citing the policy version;
- above `INTERLOCK_AUTO_APPROVE_CENTS` -> `interrupt()` for a human (support staff only); the
  interrupt lives in the checkpoint, so it survives a restart and resumes right here;
- otherwise -> allowed automatically.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from graphs.actors import is_staff, resolve_actor
from graphs.errors import DependencyError
from graphs.settings import Settings
from graphs.state import (
    ApprovalDecision,
    ApprovalRequest,
    Event,
    InterlockContext,
    RefundProposal,
    Verdict,
    WorkerState,
)
from tools.clock import Clock, iso, parse_iso
from tools.governor import CallContext
from tools.spans import thread_of
from tools.toolbox import Toolbox

__all__ = ["make_approval_guard", "policy_reasons"]

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


async def _recheck(proposal: RefundProposal, toolbox: Toolbox, ctx: CallContext
                   ) -> tuple[RefundProposal | None, list[str]]:
    """The proposal with what changed while a human decided (None if it cannot be checked)."""
    order = await toolbox.store.order(proposal["order_id"], actor=proposal["requested_by"],
                                      ctx=ctx)
    try:
        earlier = await toolbox.payments.refunds(proposal["order_id"], ctx)
    except DependencyError as exc:
        return None, [f"payments_unavailable: could not re-check earlier refunds after the "
                      f"approval ({exc.reason}); no money was moved"]
    if order is None:
        return None, [f"order_gone: order {proposal['order_id']} is no longer visible"]
    fresh = RefundProposal(**{**proposal, "order_status": order.status,
                              "paid_cents": order.paid_cents,
                              "refunded_cents": sum(r.amount_cents for r in earlier)})
    return fresh, []


def make_approval_guard(settings: Settings, clock: Clock, toolbox: Toolbox) -> Any:
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
        fact_ids = [f"order:{proposal['order_id']}", "policy:refund"]
        reasons = policy_reasons(proposal)
        escalated = False
        approver = None
        verdicts: list[Verdict] = []
        events: list[Event] = []
        if reasons:
            decision: ApprovalDecision = ApprovalDecision(
                decision="refuse", reasons=reasons, approver=None, escalated=False,
                decided_at=iso(clock.now()))
        elif (proposal["amount_cents"] > settings.auto_approve_cents
              or state["step"]["amount_cents"] is None):
            escalated = True
            why = (f"above_limit: {_money(proposal['amount_cents'], proposal['currency'])} is "
                   f"above the auto-approval limit of "
                   f"{_money(settings.auto_approve_cents, proposal['currency'])}"
                   if proposal["amount_cents"] > settings.auto_approve_cents else
                   f"amount_not_stated: the request named no amount; a human confirms the "
                   f"full {_money(proposal['amount_cents'], proposal['currency'])}")
            verdicts.append(Verdict(
                guard=GUARD, passed=False, action="escalate", reasons=[why],
                fact_ids=fact_ids, step_id=step_id, turn=turn, at=proposal["requested_at"]))
            answer = interrupt(ApprovalRequest(
                kind="refund_approval", step_id=step_id, order_id=proposal["order_id"],
                amount_cents=proposal["amount_cents"], currency=proposal["currency"],
                limit_cents=settings.auto_approve_cents, reason=why,
                policy_version=proposal["policy_version"] or "",
                requested_by=proposal["requested_by"]))
            approver = resolve_actor(runtime)
            # A human decision starts a fresh deadline for the re-check and the payment.
            fresh_deadline = clock.now() + timedelta(seconds=settings.deadline_s)
            approved, note = _read_answer(answer)
            events.append(Event(at=iso(clock.now()), kind="decision", dependency=None,
                                thread_id=thread_of(runtime), step_id=step_id,
                                detail={"answer": answer if isinstance(answer, bool | dict)
                                        else repr(answer)[:200], "approver": approver}))
            if not is_staff(approver):
                decision = ApprovalDecision(
                    decision="rejected", approver=approver, escalated=True,
                    reasons=["approver_not_staff: only support staff may approve refunds"],
                    decided_at=iso(clock.now()))
            elif approved is None:
                decision = ApprovalDecision(
                    decision="rejected", approver=approver, escalated=True,
                    reasons=["malformed_decision: expected {'approved': true|false}"],
                    decided_at=iso(clock.now()))
            else:
                decision = ApprovalDecision(
                    decision="allow" if approved else "rejected", approver=approver,
                    escalated=True, decided_at=iso(clock.now()),
                    reasons=[("approved_by_staff" if approved else "rejected_by_staff")
                             + (f": {note}" if note else "")])
                if approved:
                    ctx = CallContext.until(fresh_deadline, clock, step_id=step_id,
                                            thread_id=thread_of(runtime))
                    fresh, problems = await _recheck(proposal, toolbox, ctx)
                    if fresh is not None:
                        problems = policy_reasons(fresh)
                    events.extend(ctx.events)
                    if problems:
                        decision = ApprovalDecision(
                            decision="refuse", approver=approver, escalated=True,
                            decided_at=iso(clock.now()),
                            reasons=[f"changed_while_waiting: {p}" for p in problems])
        else:
            decision = ApprovalDecision(
                decision="allow", approver=None, escalated=False, decided_at=iso(clock.now()),
                reasons=[f"auto_approved: within the "
                         f"{_money(settings.auto_approve_cents, proposal['currency'])} limit "
                         f"and refund policy {proposal['policy_version']}"])
        verdicts.append(Verdict(
            guard=GUARD, passed=decision["decision"] == "allow",
            action="allow" if decision["decision"] == "allow" else "refuse",
            reasons=decision["reasons"], fact_ids=fact_ids, step_id=step_id, turn=turn,
            at=decision["decided_at"]))
        scratch: dict[str, Any] = {"approval": decision}
        if escalated:
            scratch["deadline_at"] = iso(fresh_deadline)
        return {"scratch": scratch, "verdicts": verdicts, "events": events}

    return approval_guard


def _read_answer(answer: Any) -> tuple[bool | None, str]:
    """(approved, note) from a resume value; approved is None when the value is malformed."""
    if isinstance(answer, bool):
        return answer, ""
    if isinstance(answer, dict) and isinstance(answer.get("approved"), bool):
        note = answer.get("note")
        return answer["approved"], str(note)[:500] if note else ""
    return None, ""
