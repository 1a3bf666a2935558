"""Refunds worker: assess -> approval guard -> execute, the only worker with a side effect.

- `assess` reads the order and policy facts its step depends on and asks the payments service
  what was already refunded, then proposes a refund (`scratch.proposal`);
- the approval guard (from `guards/`, placed here by the graph builder) allows, refuses, or
  interrupts for a human;
- `execute` pays with an idempotency key derived from the conversation's origin, the turn, the
  plan step and the terms, so a retry, a resume, a crash, a re-run, a fork or a copy never
  pays twice; an answer that never came is reported as pending.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from pydantic import BaseModel, ConfigDict, Field

from agents.base import (
    WorkerDeps,
    WorkerGraph,
    WorkerSpec,
    call_context,
    make_fact,
    report,
)
from agents.orders import ORDER_NUMBERS
from graphs.core.actors import Actor, viewer_of
from graphs.core.answers import MONEY, AnswerContext, Claim, money
from graphs.core.clock import iso, parse_iso
from graphs.core.effects import EffectRules, Proposal
from graphs.core.state import (
    ApprovalDecision,
    Event,
    Fact,
    InterlockContext,
    PlanStep,
    RequestInfo,
    WorkerInput,
    WorkerOutput,
    WorkerState,
)
from tools.errors import DependencyError
from tools.exactly_once import Outcome, may_succeed_later, perform
from tools.governor import CallContext
from tools.payments import Refund
from tools.toolbox import Toolbox

__all__ = ["REFUND_MADE", "RULES", "SPEC", "RefundValue", "describe", "effect_id",
           "idempotency_key", "policy_reasons", "recheck"]

RefundStatus = Literal["executed", "pending", "proposed", "refused", "rejected", "failed",
                       "not_found"]


class RefundValue(BaseModel):
    """The `refund` fact: what happened to one refund request."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    order_id: int
    status: RefundStatus
    amount_cents: int | None = Field(default=None, ge=0)
    currency: str | None = None
    refund_id: str | None = None
    policy_version: str | None = None
    reasons: list[str] = []
    idempotency_key: str | None = None
    left_cents: int | None = None
    retryable: bool = False
    """For `failed`: the payments service was unavailable, so trying again later may work."""
    asked_cents: int | None = Field(default=None, ge=0)
    """For `proposed`: the amount the request named, when the offer is for less."""
    summary: str | None = None
    """For `proposed`: the offer in one line ("Refund $39.00 on order 1012")."""


def _origin(request: RequestInfo) -> str:
    # A request recorded before origins were kept names its message instead.
    return request.get("origin") or f"message:{request['message_id']}"


def effect_id(request: RequestInfo, step_id: str, order_id: int) -> str:
    """The effect of one plan step, for good: origin, turn, step, order and what was asked.

    A re-run of the same request, a replay, a fork or a copy of the thread names the same
    effect, whoever presses the button; another request in the same place (a fork that asks
    something else at that turn) is another effect. The effects journal finds what an effect
    attempted by this id.
    """
    asked = " ".join(request["text"].split()).casefold()
    seed = f"interlock|{_origin(request)}|{request['turn']}|{step_id}|{order_id}|{asked}|refund"
    return f"fx_{hashlib.sha256(seed.encode()).hexdigest()[:40]}"


def idempotency_key(request: RequestInfo, step_id: str, order_id: int, amount_cents: int,
                    currency: str) -> str:
    """The payment's idempotency key: the effect (see `effect_id`) and its terms.

    It names neither the thread nor who asked: a re-run, replay, fork or copy of a paid
    request reaches the same key, and the payments service answers with the refund it made
    instead of paying twice. The terms are part of it, so the same step re-run for another
    amount is a new payment (which the approval guard then weighs as a likely duplicate).
    """
    seed = f"{effect_id(request, step_id, order_id)}|{amount_cents}|{currency}"
    return f"il_{hashlib.sha256(seed.encode()).hexdigest()[:40]}"


def _legacy_key(request: RequestInfo, step_id: str, order_id: int) -> str:
    """The key a refund of the previous version had (requester, message id, step, order).

    A payment that version left in flight is found under it and settled under it, so an
    upgrade in the middle of a payment never pays it twice.
    """
    actor = request["actor"]
    who = f"{actor['kind']}:{actor['customer_id'] or ''}"
    seed = f"interlock|{who}|{request['message_id']}|{step_id}|{order_id}|refund"
    return f"il_{hashlib.sha256(seed.encode()).hexdigest()[:40]}"


async def _prior(toolbox: Toolbox, request: RequestInfo, step_id: str, order_id: int,
                 ctx: CallContext | None = None) -> dict[str, Any] | None:
    """What this step already attempted (its key, terms and outcome), if anything."""
    found = await toolbox.effects.effect(effect_id(request, step_id, order_id), ctx)
    if found is not None and found["attempts"]:
        return found
    if request.get("origin"):  # recorded by this version: no payment under an older key
        return None
    legacy = _legacy_key(request, step_id, order_id)
    earlier = await toolbox.effects.entry(legacy, ctx)
    return earlier if earlier is not None and earlier["attempts"] else None


def _when(moment: Any, now: str) -> str:
    """A service's timestamp as RFC 3339; one it sends oddly counts as `now`.

    That is the safer reading: it then weighs within every window.
    """
    try:
        return iso(parse_iso(str(moment)))
    except ValueError:
        return now


async def _ask_first(toolbox: Toolbox, ctx: CallContext, order_id: int, key: str,
                     earlier: int) -> None:
    """Ask the payments service what it knows before trying again; put it on the record.

    Only a record for people: the retry that follows uses the same key, so it is safe whether
    or not this question gets an answer, and a failure to ask does not hold it back.
    """
    detail: dict[str, Any] = {"action": "list_refunds", "earlier_attempts": earlier, "key": key}
    try:
        known = await toolbox.payments.refunds(order_id, ctx)
    except DependencyError as exc:
        detail["error"] = exc.reason
    else:
        detail.update(known_refunds=len(known), known_cents=sum(r.amount_cents for r in known))
    ctx.events.append(Event(
        at=iso(toolbox.clock.now()), kind="reconcile", dependency="payments",
        thread_id=ctx.thread_id, step_id=ctx.step_id, detail=detail))


def _refund_fact(step: PlanStep, now: datetime, **value: Any) -> Fact:
    """The `refund` fact of a step."""
    return make_fact(SPEC, step, kind="refund", subject=step["id"],
                     value=RefundValue(**value), source="payments", as_of=now,
                     version=value.get("policy_version"))


_TERMS = ("order_id", "amount_cents", "currency", "policy_version")
"""What a payment is: noted in the effects journal before it is sent."""


async def _pay(toolbox: Toolbox, ctx: CallContext, step_id: str, key: str,
               terms: dict[str, Any], *, ask_first: bool) -> Outcome[Refund]:
    """Pay under `key`, exactly once; ask the service first when an earlier attempt may have."""
    return await perform(
        toolbox.effects, key, dependency="payments", action="refund",
        terms={k: terms[k] for k in _TERMS}, ctx=ctx, ask_first=ask_first,
        ask=lambda earlier: _ask_first(toolbox, ctx, terms["order_id"], key, earlier),
        send=lambda: toolbox.payments.refund(
            order_id=terms["order_id"], amount_cents=terms["amount_cents"],
            currency=terms["currency"], reason=f"support request {step_id}",
            idempotency_key=key, ctx=ctx))


def policy_reasons(p: Proposal) -> list[str]:
    """Why the refund policy forbids this refund (empty: it allows it), citing its version."""
    d = p["details"]
    version = p["policy_version"]
    cur = p["currency"]
    order = d["order_id"]
    reasons: list[str] = []
    if version is None or d.get("return_window_days") is None:
        return ["no_policy: no refund policy was in effect at the time of the request"]
    cite = f"(refund policy {version})"
    left = d["paid_cents"] - d["refunded_cents"]
    status = d["order_status"]
    if status == "cancelled" or d["paid_cents"] == 0:
        reasons.append(f"not_charged: order {order} was cancelled and never charged {cite}")
    elif status == "shipped":
        reasons.append(f"in_transit: order {order} is in transit; it can be refunded once "
                       f"delivered {cite}")
    elif status in ("delivered", "partially_refunded"):
        delivered = d.get("delivered_at")
        if delivered is None:
            reasons.append(f"no_delivery_date: order {order} has no delivery date {cite}")
        else:
            days = d["return_window_days"]
            closes = parse_iso(delivered) + timedelta(days=days)
            if parse_iso(p["requested_at"]) > closes:
                reasons.append(f"outside_window: order {order} was delivered on "
                               f"{delivered[:10]}; the {days}-day return window closed on "
                               f"{iso(closes)[:10]} {cite}")
    if p["impact_cents"] > left and not reasons:
        reasons.append(f"exceeds_paid: {money(p['impact_cents'], cur)} is more than the "
                       f"{money(max(left, 0), cur)} left of what was paid on order {order} "
                       f"{cite}")
    return reasons


async def recheck(p: Proposal, toolbox: Toolbox, ctx: CallContext) -> list[str]:
    """What changed while a human decided that stops the refund (empty: nothing did)."""
    d = p["details"]
    order = await toolbox.store.order(d["order_id"], actor=p["requested_by"], ctx=ctx)
    try:
        earlier = await toolbox.payments.refunds(d["order_id"], ctx)
    except DependencyError as exc:
        return [f"payments_unavailable: could not re-check earlier refunds after the "
                f"approval ({exc.reason}); no money was moved"]
    if order is None:
        return [f"order_gone: order {d['order_id']} is no longer visible"]
    seen = sum(r.amount_cents for r in earlier)
    was = int(d["seen_cents"])
    fresh = Proposal(**{**p, "details": {
        **d, "order_status": order.status, "paid_cents": order.paid_cents,
        "refunded_cents": d["refunded_cents"] + seen - was}})
    if problems := policy_reasons(fresh):
        return problems
    if seen != was:
        return [f"refunds_changed: refunds on order {d['order_id']} came to "
                f"{money(was, p['currency'])} when approval was asked and come to "
                f"{money(seen, p['currency'])} now; ask again"]
    return []


def _proposal(*, step_id: str, order_id: int, amount: int, currency: str, stated: bool,
              key: str, effect: str, policy_version: str | None, window_days: int | None,
              order_status: str, delivered_at: str | None, paid: int, refunded: int,
              seen: int, customer: int | None, requested_at: str, requested_by: Actor,
              recent: list[dict[str, Any]]) -> Proposal:
    """A refund as the approval gate weighs it."""
    return Proposal(
        effect=SPEC.name, kind="refund_approval", step_id=step_id,
        summary=f"Refund {money(amount, currency)} on order {order_id}",
        subject=f"order:{order_id}",
        principal=f"customer:{customer}" if customer is not None else None,
        impact_cents=amount, currency=currency, amount_stated=stated, key=key,
        effect_id=effect, policy_version=policy_version, requested_at=requested_at,
        requested_by=requested_by,
        terms={"order_id": order_id, "amount_cents": amount, "currency": currency,
               "policy_version": policy_version},
        shown={"order_id": order_id, "amount_cents": amount},
        details={"order_id": order_id, "order_status": order_status,
                 "delivered_at": delivered_at, "paid_cents": paid, "refunded_cents": refunded,
                 "return_window_days": window_days, "seen_cents": seen},
        # Every refund of the order, for the gate to weigh within its windows.
        recent=recent, facts=[f"order:{order_id}", "policy:refund"])


def upgrade(held: Mapping[str, Any], request: Mapping[str, Any]) -> Proposal | None:
    """A refund proposal the previous version left waiting for a human, read as today's.

    That version kept the refund's fields flat (`RefundProposal`); its payment key is kept
    (or, older still, derived as that version did), so an approval given across an upgrade
    pays under the key that was shown, once.
    """
    try:
        order_id, step_id = int(held["order_id"]), str(held["step_id"])
        info = cast(RequestInfo, request)
        customer = held.get("customer_id")
        return _proposal(
            step_id=step_id, order_id=order_id, amount=int(held["amount_cents"]),
            currency=str(held["currency"]), stated=False,
            key=str(held.get("idempotency_key") or _legacy_key(info, step_id, order_id)),
            effect=str(held.get("effect_id") or effect_id(info, step_id, order_id)),
            policy_version=held.get("policy_version"),
            window_days=held.get("return_window_days"),
            order_status=str(held["order_status"]), delivered_at=held.get("delivered_at"),
            paid=int(held["paid_cents"]), refunded=int(held["refunded_cents"]),
            seen=int(held.get("seen_cents", held["refunded_cents"])),
            customer=int(customer) if customer is not None else None,
            requested_at=str(held["requested_at"]), requested_by=held["requested_by"],
            recent=[{"id": r.get("refund_id"), "impact_cents": int(r.get("amount_cents", 0)),
                     "at": _when(r.get("created_at", r.get("at")), str(held["requested_at"]))}
                    for r in held.get("recent") or ()])
    except (KeyError, TypeError, ValueError):
        return None


RULES = EffectRules(problems=policy_reasons, recheck=recheck, upgrade=upgrade)
"""What the approval gate applies to a refund: the policy in effect, and a re-check."""


def _offer_or_stale(step: PlanStep, proposal: Proposal, left: int, now: datetime
                    ) -> Fact | None:
    """What a step settles without the approval gate (None: it goes to the gate).

    - an amount in answer to an offer (`offer_only`): that amount is offered instead;
    - a "yes" to an offer made under another policy version: refused, the offer is void;
    - no amount named: nothing is paid; the desk offers what is left, if the policy allows
      a refund at all (a following "yes" confirms exactly that);
    - more than what is left named, and that the only problem: the desk offers what is left.
    """
    order_id = proposal["details"]["order_id"]
    currency, version = proposal["currency"], proposal["policy_version"]
    asked = step["amount_cents"]
    if step.get("offer_only"):  # an amount in answer to an offer: offered, never paid here
        amount = min(asked, left) if asked is not None else left
        if problems := policy_reasons(Proposal(**{**proposal, "impact_cents": amount})):
            return _refund_fact(step, now, order_id=order_id, status="refused",
                               amount_cents=amount, currency=currency, policy_version=version,
                               left_cents=left, reasons=problems)
        return _refund_fact(step, now, order_id=order_id, status="proposed",
                           amount_cents=amount, currency=currency, policy_version=version,
                           asked_cents=asked if asked != amount else None, left_cents=left,
                           summary=f"Refund {money(amount, currency)} on order {order_id}",
                           reasons=[f"counter_offer: {money(amount, currency)} is offered in "
                                    f"place of the earlier offer; nothing was refunded, for "
                                    f"the requester to confirm"])
    confirms = step.get("confirms")
    if confirms is not None:
        if confirms["policy_version"] == version:
            return None
        return _refund_fact(step, now, order_id=order_id, status="refused",
                           amount_cents=proposal["impact_cents"], currency=currency,
                           policy_version=version, left_cents=left, reasons=[
                               f"policy_changed: I offered it in turn {confirms['turn']} under "
                               f"refund policy {confirms['policy_version']}, and policy "
                               f"{version} is in effect now; that offer no longer stands, so "
                               f"ask again"])
    problems = policy_reasons(Proposal(**{**proposal, "impact_cents": asked or left}))
    over = bool(problems) and all(p.startswith("exceeds_paid") for p in problems)
    if (asked is None and not problems) or (asked is not None and over and left > 0):
        why = ("no_amount: the request named no amount" if asked is None else problems[0])
        return _refund_fact(step, now, order_id=order_id, status="proposed",
                           amount_cents=left, asked_cents=asked, currency=currency,
                           policy_version=version, left_cents=left,
                           summary=f"Refund {money(left, currency)} on order {order_id}", reasons=[
                               f"{why}; nothing was refunded, {money(left, currency)} is "
                               f"offered (what is left of what was paid), for the requester "
                               f"to confirm"])
    return None


def _build(deps: WorkerDeps) -> WorkerGraph:
    toolbox: Toolbox = deps.toolbox

    async def assess(state: WorkerState, runtime: Runtime[InterlockContext]) -> dict[str, Any]:
        """Propose a refund from the store's order, the payments service and the policy.

        What goes into the money decision is read here, scoped to the requester, rather than
        taken from the facts handed in: a step cannot be talked into paying by its input.
        """
        step = state["step"]
        order_id = step["order_id"]
        assert order_id is not None
        now = toolbox.clock.now()
        request = state["request"]
        ctx = call_context(state, toolbox, runtime)
        order = await toolbox.store.order(order_id, actor=viewer_of(request), ctx=ctx)
        if order is None:
            fact = _refund_fact(step, now, order_id=order_id, status="not_found",
                               reasons=[f"order {order_id} not found"])
            return {**report(SPEC, step, "not_found", [fact], events=ctx.events),
                    "scratch": {"stop": True}}
        try:
            earlier = await toolbox.payments.refunds(order_id, ctx)
        except DependencyError as exc:
            fact = _refund_fact(step, now, order_id=order_id, status="failed", retryable=True,
                               reasons=[f"payments_unavailable: could not check earlier "
                                        f"refunds ({exc.reason}); no money was moved"])
            return {**report(SPEC, step, "degraded", [fact], degraded=["payments"],
                             events=ctx.events), "scratch": {"stop": True}}
        requested_at = parse_iso(request["received_at"])
        policy = await toolbox.store.policy_at(requested_at, ctx)
        seen = refunded = sum(r.amount_cents for r in earlier)
        amount = step["amount_cents"]
        effect = effect_id(request, step["id"], order_id)
        prior = await _prior(toolbox, request, step["id"], order_id, ctx)
        if prior is not None:
            # This step already sent a payment (a run that died, resumed): the earlier one
            # may be among the refunds just read. Propose exactly what was sent, under the
            # same key, so the service answers with the refund it made or makes it now; the
            # service itself never refunds more than was paid.
            amount = int(prior["request"]["amount_cents"])
            refunded = max(0, refunded - amount)
        left = max(0, order.paid_cents - refunded)
        amount = amount if amount is not None else left
        key = prior["key"] if prior is not None else idempotency_key(
            request, step["id"], order_id, amount, order.currency)
        proposal = _proposal(
            step_id=step["id"], order_id=order_id, amount=amount, currency=order.currency,
            stated=step["amount_cents"] is not None, key=key, effect=effect,
            policy_version=policy.version if policy else None,
            window_days=policy.return_window_days if policy else None,
            order_status=order.status,
            delivered_at=iso(order.delivered_at) if order.delivered_at else None,
            paid=order.paid_cents, refunded=refunded, seen=seen, customer=order.customer_id,
            requested_at=request["received_at"], requested_by=request["actor"],
            recent=[{"id": r.refund_id, "impact_cents": r.amount_cents,
                     "at": _when(r.created_at, iso(now))} for r in earlier])
        if amount <= 0:
            fact = _refund_fact(step, now, order_id=order_id, status="refused", amount_cents=0,
                               currency=order.currency, left_cents=left,
                               policy_version=proposal["policy_version"],
                               reasons=[f"nothing_left: order {order_id} has nothing left to "
                                        f"refund"])
            return {**report(SPEC, step, "refused", [fact], events=ctx.events),
                    "scratch": {"stop": True}}
        if prior is None and (settled := _offer_or_stale(step, proposal, left, now)):
            offered = settled["value"]["status"] == "proposed"
            return {**report(SPEC, step, "done" if offered else "refused", [settled],
                             events=ctx.events), "scratch": {"stop": True}}
        if (confirms := step.get("confirms")) is not None:
            proposal["confirmed"] = (f"confirmed: the requester said yes to the offer of turn "
                                     f"{confirms['turn']} ({confirms['summary']})")
        return {"scratch": {"proposal": proposal}, "events": ctx.events}

    async def reconcile(state: WorkerState, runtime: Runtime[InterlockContext]
                        ) -> dict[str, Any]:
        """Settle a refund whose outcome was unknown: ask the service, then retry the same key."""
        step = state["step"]
        pending = state["facts"][f"refund:{step['id']}"]["value"]
        key = pending["idempotency_key"]
        now = toolbox.clock.now()
        ctx = call_context(state, toolbox, runtime)
        common = {k: pending[k] for k in (*_TERMS, "left_cents")}
        outcome = await _pay(toolbox, ctx, step["id"], key, common, ask_first=True)
        refund = outcome.result
        if refund is None:
            assert outcome.error is not None
            fact = _refund_fact(step, now, status="pending", idempotency_key=key,
                               reasons=[f"outcome_unknown: still not confirmed "
                                        f"({outcome.error.reason}); retrying with the same key "
                                        f"cannot pay twice"], **common)
            return report(SPEC, step, "degraded", [fact], degraded=["payments"],
                          note="pending", events=ctx.events)
        how = ("the earlier attempt had gone through" if refund.replayed
               else "the earlier attempt had not gone through; made now")
        return await executed(step, now, key, refund, common, ctx, [f"reconciled: {how}"],
                              note="reconciled")

    async def executed(step: PlanStep, now: datetime, key: str, refund: Refund,
                       common: dict[str, Any], ctx: CallContext, reasons: list[str], *,
                       note: str) -> dict[str, Any]:
        await toolbox.effects.finish(key, "executed", {"refund_id": refund.refund_id})
        fact = _refund_fact(step, now, status="executed", refund_id=refund.refund_id,
                           idempotency_key=key, reasons=reasons, **common)
        return report(SPEC, step, "done", [fact], events=ctx.events, note=note)

    def entry(state: WorkerState) -> str:
        return "reconcile" if state.get("mode") == "reconcile" else "assess"

    def after_assess(state: WorkerState) -> str:
        return END if state.get("scratch", {}).get("stop") else "approval_guard"

    async def execute(state: WorkerState, runtime: Runtime[InterlockContext]) -> dict[str, Any]:
        step = state["step"]
        scratch = state["scratch"]
        proposal: Proposal = scratch["proposal"]
        decision: ApprovalDecision = scratch["approval"]
        now = toolbox.clock.now()
        d = proposal["details"]
        common = {"order_id": d["order_id"], "amount_cents": proposal["impact_cents"],
                  "currency": proposal["currency"], "policy_version": proposal["policy_version"],
                  "left_cents": d["paid_cents"] - d["refunded_cents"]}
        if decision["decision"] != "allow":
            status: RefundStatus = "refused" if decision["decision"] == "refuse" else "rejected"
            fact = _refund_fact(step, now, status=status, reasons=decision["reasons"], **common)
            return report(SPEC, step, "refused", [fact], note=status)
        key = proposal["key"]
        ctx = call_context(state, toolbox, runtime)
        outcome = await _pay(toolbox, ctx, step["id"], key, common, ask_first=False)
        refund = outcome.result
        if refund is None:
            error = outcome.error
            assert error is not None
            # Unknown if any attempt under this key may have reached the service: one from a
            # run that died, one that timed out here, or a 409 (the key was already used).
            status = "pending" if outcome.unknown else "failed"
            reason = (f"outcome_unknown: the payments service did not confirm "
                      f"({error.reason}); retrying with the same key cannot pay twice"
                      if outcome.unknown else
                      f"payments_failed: {error.reason}; no money was moved")
            fact = _refund_fact(step, now, status=status, idempotency_key=key, reasons=[reason],
                               retryable=not outcome.unknown and may_succeed_later(error),
                               **common)
            await toolbox.effects.finish(key, status)
            return report(SPEC, step, "degraded", [fact], degraded=["payments"],
                          note=status, events=ctx.events)
        return await executed(step, now, key, refund, common, ctx, decision["reasons"],
                              note="replayed" if refund.replayed else "")

    approval = deps.guards["approval"]
    graph = StateGraph(WorkerState, context_schema=InterlockContext, input_schema=WorkerInput,
                       output_schema=WorkerOutput)
    graph.add_node("assess", assess)
    graph.add_node("approval_guard", approval)
    graph.add_node("execute", execute)
    graph.add_node("reconcile", reconcile)
    graph.add_conditional_edges(START, entry, ["assess", "reconcile"])
    graph.add_edge("reconcile", END)
    graph.add_conditional_edges("assess", after_assess, ["approval_guard", END])
    graph.add_edge("approval_guard", "execute")
    graph.add_edge("execute", END)
    return graph.compile(name=SPEC.name)


async def _on_failure(deps: WorkerDeps, state: WorkerInput, error: BaseException
                      ) -> dict[str, Any]:
    """A refund step that raised or ran out of time: reported from what the journal knows.

    The effects journal is written before every payment is sent, so it knows: if one was
    noted (it may have landed) the refund is `pending` and reconciliation settles it under the
    same key; if none was, it is `failed` with nothing moved, and may be run again.
    """
    step = state["step"]
    toolbox: Toolbox = deps.toolbox
    what = type(error).__name__
    order_id = step["order_id"]
    if order_id is None:
        return report(SPEC, step, "failed", [], note=f"refunds failed: {what}")
    prior = await _prior(toolbox, state["request"], step["id"], order_id)
    now = toolbox.clock.now()
    if prior is None:
        fact = _refund_fact(step, now, order_id=order_id, status="failed", retryable=True,
                           reasons=[f"worker_failed: {what} before any payment was sent; "
                                    f"no money was moved"])
        return report(SPEC, step, "failed", [fact], degraded=["payments"],
                      note=f"failed after {what}")
    key = prior["key"]
    terms = {k: prior["request"].get(k) for k in _TERMS}
    if prior["outcome"] == "executed":
        # The payment went through before the step stopped: say so, never "pending".
        refund_id = (prior.get("result") or {}).get("refund_id")
        fact = _refund_fact(step, now, status="executed", idempotency_key=key,
                           refund_id=refund_id, **terms,
                           reasons=[f"executed: the payment was made (refund {refund_id}) "
                                    f"before the step stopped ({what})"])
        return report(SPEC, step, "done", [fact], note=f"executed before {what}")
    await toolbox.effects.finish(key, "pending")
    fact = _refund_fact(step, now, status="pending", idempotency_key=key, **terms,
                       reasons=[f"outcome_unknown: the step stopped ({what}) once a payment "
                                f"was under way; it may have been made, and retrying with "
                                f"the same key cannot pay twice"])
    return report(SPEC, step, "degraded", [fact], degraded=["payments"],
                  note=f"pending after {what}")


def _reason(text: str) -> str:
    return text.split(": ", 1)[-1]


def describe(fact: Fact, context: AnswerContext) -> str | None:
    """How a `refund` fact reads in the answer."""
    v = fact["value"]
    order, status = v["order_id"], v["status"]
    amount = money(v["amount_cents"], v.get("currency")) if v.get("amount_cents") else None
    reasons = "; ".join(_reason(r) for r in v.get("reasons") or [])
    if status == "executed":
        return f"I refunded {amount} on order {order} (refund {v['refund_id']})."
    if status == "refused":
        return f"I can't refund order {order}: {reasons}."
    if status == "rejected":
        return f"The refund of {amount} on order {order} was not approved ({reasons})."
    if status == "proposed":
        asked = v.get("asked_cents")
        first = (f"I can't refund {money(asked, v.get('currency'))} on order {order}: only "
                 f"{amount} is left of what was paid. " if asked else "")
        whole = v.get("amount_cents") == v.get("left_cents")
        what = " (what is left of what was paid)" if whole else ""
        return (f"{first}I can refund {amount} on order {order}{what}. Reply \"yes\" to go "
                f"ahead, or ask for a smaller amount.")
    if status == "pending":
        return (f"The refund of {amount} on order {order} is pending: the payments service has "
                f"not confirmed it yet. Retrying it can never pay twice.")
    if status == "failed":
        later = " It can be tried again later." if v.get("retryable") else ""
        return f"I couldn't refund order {order}: {reasons}.{later}"
    return None


_REFUND_DONE = re.compile(
    r"\b(?:(?:i|we)\s+(?:have\s+)?refunded"
    r"|(?:has|have|was|were|is|are|got)\s+(?:been\s+|now\s+)?refunded"
    r"|(?:i|we)\s*(?:will|'ll)\s+refund"
    r"|refund\b(?:(?!\b(?:not|never|no)\b)[^.]){0,60}?\b(?:has been|have been|was|is being|"
    r"will be)\s+(?:issued|processed|made|sent|completed|executed|paid|approved))\b",
    re.IGNORECASE)


def _refund_made(sentence: str, facts: Sequence[Fact]) -> bool:
    named = {int(n) for n in ORDER_NUMBERS.stated(sentence)}
    executed = {int(f["value"]["order_id"]) for f in facts
                if f["kind"] == "refund" and f["worker"] == SPEC.name
                and f["value"].get("status") == "executed"}
    return bool(named) and named <= executed


REFUND_MADE = Claim(
    name="refund_made", pattern=_REFUND_DONE, proven=_refund_made,
    problem="unexecuted_refund: the answer says a refund was made; none was executed")
"""Only an executed refund of the named order may be said to be made."""

SPEC = WorkerSpec(
    name="refunds", capability="refund a delivered order within the refund policy",
    version="1.0.0",
    description="Refunds an order after the approval guard allows it (idempotent payment).",
    owns={"refund": RefundValue}, build=_build, side_effects=True, needs_order=True,
    requires=("order", "policy"), on_failure=_on_failure, describe=describe, effects=RULES,
    grounds=(MONEY,), claims=(REFUND_MADE,),
)
