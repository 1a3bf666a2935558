"""A team's worker: the status of an order's return, from the warehouse."""

from __future__ import annotations

import re
from typing import Any

from langgraph.runtime import Runtime
from pydantic import BaseModel, ConfigDict

from agents.base import WorkerDeps, WorkerSpec, call_context, make_fact, report, single_node_worker
from agents.rules import RuleContext
from graphs.core.answers import AnswerContext, Ground
from graphs.core.state import Fact, InterlockContext, WorkerState
from tools.errors import DependencyError


class ReturnArgs(BaseModel):
    """What a returns step takes besides the order: why the customer returns it, if said."""

    model_config = ConfigDict(extra="forbid")
    reason: str | None = None


class ReturnValue(BaseModel):
    """The `return` fact: the order's return authorization, or that the warehouse was away."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    order_id: int
    rma: str | None = None
    status: str | None = None
    checked: bool = True


def _build(deps: WorkerDeps) -> Any:
    warehouse = deps.toolbox.client("warehouse")

    async def check_return(state: WorkerState, runtime: Runtime[InterlockContext]) -> Any:
        step = state["step"]
        order_id = step["order_id"]
        assert order_id is not None  # needs_order: the plan guard passes only steps with one
        ctx = call_context(state, deps.toolbox, runtime)
        now = deps.toolbox.clock.now()
        try:
            found = await warehouse.return_of(order_id, ctx)
        except DependencyError as exc:
            fact = make_fact(SPEC, step, kind="return", subject=str(order_id), as_of=now,
                             value=ReturnValue(order_id=order_id, checked=False),
                             source="warehouse")
            return report(SPEC, step, "degraded", [fact], degraded=["warehouse"],
                          note=f"warehouse unavailable ({exc.reason})", events=ctx.events)
        fact = make_fact(SPEC, step, kind="return", subject=str(order_id), as_of=now,
                         value=ReturnValue(order_id=order_id, rma=found.rma,
                                           status=found.status), source="warehouse")
        return report(SPEC, step, "done", [fact], events=ctx.events)

    return single_node_worker(SPEC, check_return)


_ASKED = re.compile(r"\breturn (?:status|label)|\brma\b|\bmy return\b", re.IGNORECASE)
_BECAUSE = re.compile(r"\bbecause ([a-z ]{3,40})", re.IGNORECASE)


def rule(ctx: RuleContext) -> None:
    """A returns step for each order the request names, when it asks about a return."""
    if not _ASKED.search(ctx.text):
        return
    because = _BECAUSE.search(ctx.text)
    for order_id in ctx.found.order_ids:
        ctx.add("returns", order_id=order_id,
                args={"reason": because.group(1).strip()} if because else None,
                depends_on=[s] if (s := ctx.step_of("orders", order_id)) else None)
    ctx.intent("return_status")


def describe(fact: Fact, context: AnswerContext) -> str | None:
    v = fact["value"]
    if not v["checked"]:
        return None  # the answer says the warehouse could not be checked
    if v["rma"]:
        return f"The return of order {v['order_id']} is {v['status']} under {v['rma']}."
    return f"Order {v['order_id']} has no return open."


_RMA = re.compile(r"\b(RMA-\d+)\b")
RMA_NUMBERS = Ground(name="rma", stated=lambda sentence: _RMA.findall(sentence),
                     backed=lambda fact: [str(fact["value"]["rma"])]
                     if fact["value"].get("rma") else [])

SPEC = WorkerSpec(
    name="returns", version="0.1.0", capability="check a return's status",
    description="Checks an order's return with the warehouse (RMA number, status).",
    owns={"return": ReturnValue}, build=_build, needs_order=True, requires=("order",),
    args=ReturnArgs, mentioned_args=("reason",), rule=rule, describe=describe,
    grounds=(RMA_NUMBERS,), produces=lambda step: [f"return:{step['order_id']}"])
WORKERS = [SPEC]  # what INTERLOCK_EXTENSIONS reads
