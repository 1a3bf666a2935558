"""Refunds worker: assess -> approval guard -> execute, the only worker with a side effect.

- `assess` reads the order and policy facts its step depends on and asks the payments service
  what was already refunded, then proposes a refund (`scratch.proposal`);
- the approval guard (from `guards/`, placed here by the graph builder) allows, refuses, or
  interrupts for a human;
- `execute` pays with an idempotency key derived from the thread and the plan step, so a retry,
  a resume or a crash never pays twice; an answer that never came is reported as pending.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any, Literal

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
from graphs.errors import DependencyError
from graphs.state import (
    ApprovalDecision,
    Event,
    InterlockContext,
    PlanStep,
    RefundProposal,
    WorkerInput,
    WorkerOutput,
    WorkerState,
)
from tools.clock import iso
from tools.governor import CallContext
from tools.toolbox import Toolbox

__all__ = ["SPEC", "RefundValue", "idempotency_key"]

RefundStatus = Literal["executed", "pending", "refused", "rejected", "failed", "not_found"]


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


def idempotency_key(thread_id: str, step_id: str) -> str:
    """The payment's idempotency key: stable for one thread and plan step, whatever happens."""
    digest = hashlib.sha256(f"interlock|{thread_id}|{step_id}|refund".encode()).hexdigest()
    return f"il_{digest[:40]}"


def _outcome_unknown(events: list[Event]) -> bool:
    """Whether any attempt may have reached the service without a definite answer."""
    return any(e["kind"] == "attempt" and e["detail"].get("action") == "refund"
               and e["detail"].get("outcome") == "error" and e["detail"].get("retryable")
               for e in events)


async def _ask_first(toolbox: Toolbox, ctx: CallContext, order_id: int, key: str,
                     earlier: int) -> None:
    """Ask the payments service what it knows before trying again; put it on the record."""
    known = await toolbox.payments.refunds(order_id, ctx)
    ctx.events.append(Event(
        at=iso(toolbox.clock.now()), kind="reconcile", dependency="payments",
        thread_id=ctx.thread_id, step_id=ctx.step_id,
        detail={"action": "list_refunds", "earlier_attempts": earlier, "key": key,
                "known_refunds": len(known), "known_cents": sum(r.amount_cents for r in known)}))


def _may_succeed_later(exc: DependencyError) -> bool:
    """Whether a payment refused before it was attempted may go through later."""
    return exc.retryable or exc.reason in ("breaker_open", "bulkhead_full", "deadline",
                                           "retry_budget_exhausted", "timeout", "unavailable")


def _thread_of(runtime: Runtime[InterlockContext]) -> str:
    """The thread id; a run without a checkpointer gets a one-off id (it cannot be resumed)."""
    info = runtime.execution_info
    if info is not None and info.thread_id:
        return info.thread_id
    return f"unthreaded-{info.run_id if info is not None and info.run_id else uuid.uuid4()}"


def _build(deps: WorkerDeps) -> WorkerGraph:
    toolbox: Toolbox = deps.toolbox

    def refund_fact(step: PlanStep, now: datetime, **value: Any) -> Any:
        return make_fact(SPEC, step, kind="refund", subject=step["id"],
                         value=RefundValue(**value), source="payments", as_of=now,
                         version=value.get("policy_version"))

    async def assess(state: WorkerState, runtime: Runtime[InterlockContext]) -> dict[str, Any]:
        step = state["step"]
        order_id = step["order_id"]
        assert order_id is not None
        now = toolbox.clock.now()
        order = state["facts"].get(f"order:{order_id}")
        policy = state["facts"].get("policy:refund")
        if order is None or not order["value"].get("found"):
            fact = refund_fact(step, now, order_id=order_id, status="not_found",
                               reasons=[f"order {order_id} not found"])
            return {**report(SPEC, step, "not_found", [fact]), "scratch": {"stop": True}}
        ctx = call_context(state, toolbox, runtime)
        try:
            earlier = await toolbox.payments.refunds(order_id, ctx)
        except DependencyError as exc:
            fact = refund_fact(step, now, order_id=order_id, status="failed", retryable=True,
                               reasons=[f"payments_unavailable: could not check earlier "
                                        f"refunds ({exc.reason}); no money was moved"])
            return {**report(SPEC, step, "degraded", [fact], degraded=["payments"],
                             events=ctx.events), "scratch": {"stop": True}}
        value = order["value"]
        refunded = sum(r.amount_cents for r in earlier)
        left = max(0, int(value["paid_cents"]) - refunded)
        pvalue = policy["value"] if policy and policy["value"].get("found") else None
        proposal = RefundProposal(
            step_id=step["id"], order_id=order_id,
            amount_cents=step["amount_cents"] if step["amount_cents"] is not None else left,
            currency=str(value["currency"]), order_status=str(value["status"]),
            delivered_at=value.get("delivered_at"), paid_cents=int(value["paid_cents"]),
            refunded_cents=refunded,
            policy_version=pvalue["version"] if pvalue else None,
            return_window_days=pvalue["return_window_days"] if pvalue else None,
            requested_at=state["request"]["received_at"],
            requested_by=state["request"]["actor"])
        if proposal["amount_cents"] <= 0:
            fact = refund_fact(step, now, order_id=order_id, status="refused", amount_cents=0,
                               currency=proposal["currency"], left_cents=left,
                               policy_version=proposal["policy_version"],
                               reasons=[f"nothing_left: order {order_id} has nothing left to "
                                        f"refund"])
            return {**report(SPEC, step, "refused", [fact], events=ctx.events),
                    "scratch": {"stop": True}}
        return {"scratch": {"proposal": proposal}, "events": ctx.events}

    async def reconcile(state: WorkerState, runtime: Runtime[InterlockContext]
                        ) -> dict[str, Any]:
        """Settle a refund whose outcome was unknown: ask the service, then retry the same key."""
        step = state["step"]
        pending = state["facts"][f"refund:{step['id']}"]["value"]
        key = pending["idempotency_key"]
        now = toolbox.clock.now()
        ctx = call_context(state, toolbox, runtime)
        common = {k: pending[k] for k in ("order_id", "amount_cents", "currency",
                                          "policy_version", "left_cents")}
        try:
            earlier = await toolbox.effects.begin(key, dependency="payments", ctx=ctx,
                                                  request={"order_id": pending["order_id"],
                                                           "amount_cents":
                                                           pending["amount_cents"]})
            await _ask_first(toolbox, ctx, pending["order_id"], key, earlier)
            # The same key can only ever make one refund: if the earlier attempt landed, the
            # service answers 200 with it; if it did not, this makes it now.
            refund = await toolbox.payments.refund(
                order_id=pending["order_id"], amount_cents=pending["amount_cents"],
                currency=pending["currency"], reason=f"support request {step['id']}",
                idempotency_key=key, ctx=ctx)
        except DependencyError as exc:
            fact = refund_fact(step, now, status="pending", idempotency_key=key,
                               reasons=[f"outcome_unknown: still not confirmed ({exc.reason}); "
                                        f"retrying with the same key cannot pay twice"],
                               **common)
            return report(SPEC, step, "degraded", [fact], degraded=["payments"],
                          note="pending", events=ctx.events)
        await toolbox.effects.finish(key, "executed", {"refund_id": refund.refund_id})
        how = ("the earlier attempt had gone through" if refund.replayed
               else "the earlier attempt had not gone through; made now")
        fact = refund_fact(step, now, status="executed", refund_id=refund.refund_id,
                           idempotency_key=key, reasons=[f"reconciled: {how}"], **common)
        return report(SPEC, step, "done", [fact], events=ctx.events, note="reconciled")

    def entry(state: WorkerState) -> str:
        return "reconcile" if state.get("mode") == "reconcile" else "assess"

    def after_assess(state: WorkerState) -> str:
        return END if state.get("scratch", {}).get("stop") else "approval_guard"

    async def execute(state: WorkerState, runtime: Runtime[InterlockContext]) -> dict[str, Any]:
        step = state["step"]
        scratch = state["scratch"]
        proposal: RefundProposal = scratch["proposal"]
        decision: ApprovalDecision = scratch["approval"]
        now = toolbox.clock.now()
        common = {"order_id": proposal["order_id"], "amount_cents": proposal["amount_cents"],
                  "currency": proposal["currency"], "policy_version": proposal["policy_version"],
                  "left_cents": proposal["paid_cents"] - proposal["refunded_cents"]}
        if decision["decision"] != "allow":
            status: RefundStatus = "refused" if decision["decision"] == "refuse" else "rejected"
            fact = refund_fact(step, now, status=status, reasons=decision["reasons"], **common)
            return report(SPEC, step, "refused", [fact], note=status)
        key = idempotency_key(_thread_of(runtime), step["id"])
        ctx = call_context(state, toolbox, runtime)
        try:
            earlier = await toolbox.effects.begin(key, dependency="payments", ctx=ctx,
                                                  request={"order_id": proposal["order_id"],
                                                           "amount_cents":
                                                           proposal["amount_cents"]})
            if earlier:
                # A run that died after sending this payment may have made it: ask first.
                await _ask_first(toolbox, ctx, proposal["order_id"], key, earlier)
            refund = await toolbox.payments.refund(
                order_id=proposal["order_id"], amount_cents=proposal["amount_cents"],
                currency=proposal["currency"], reason=f"support request {step['id']}",
                idempotency_key=key, ctx=ctx)
        except DependencyError as exc:
            unknown = _outcome_unknown(ctx.events)
            status = "pending" if unknown else "failed"
            reason = (f"outcome_unknown: the payments service did not confirm ({exc.reason}); "
                      f"retrying with the same key cannot pay twice" if unknown else
                      f"payments_failed: {exc.reason}; no money was moved")
            fact = refund_fact(step, now, status=status, idempotency_key=key, reasons=[reason],
                               retryable=not unknown and _may_succeed_later(exc), **common)
            await toolbox.effects.finish(key, status)
            return report(SPEC, step, "degraded", [fact], degraded=["payments"],
                          note=status, events=ctx.events)
        await toolbox.effects.finish(key, "executed", {"refund_id": refund.refund_id})
        fact = refund_fact(step, now, status="executed", refund_id=refund.refund_id,
                           idempotency_key=key, reasons=decision["reasons"], **common)
        return report(SPEC, step, "done", [fact], events=ctx.events,
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


SPEC = WorkerSpec(
    name="refunds", version="1.0.0",
    description="Refunds an order after the approval guard allows it (idempotent payment).",
    owns={"refund": RefundValue}, build=_build, side_effects=True, needs_order=True,
    requires=("order", "policy"),
)
