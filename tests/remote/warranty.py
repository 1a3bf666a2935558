"""A team's module: the remote warranty graph as a governed Interlock worker, in one place."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

from agents.remote import remote_worker
from agents.rules import RuleContext
from graphs.core.answers import AnswerContext
from graphs.core.state import Fact, PlanStep


class WarrantyValue(BaseModel):
    """The `warranty` fact: whether an order is covered, and for how long."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    order_id: int
    covered: bool | None = None
    years: int = 0
    checked: bool = True


_ASKED = re.compile(r"\bwarrant(?:y|ies)\b", re.IGNORECASE)


def rule(ctx: RuleContext) -> None:
    """A warranty step for each order the request names, when it asks about the warranty."""
    if not _ASKED.search(ctx.text):
        return
    for order_id in ctx.found.order_ids:
        ctx.add("warranty", order_id=order_id,
                depends_on=[s] if (s := ctx.step_of("orders", order_id)) else None)
    ctx.intent("warranty")


def describe(fact: Fact, context: AnswerContext) -> str | None:
    v = fact["value"]
    if not v["checked"]:
        return f"I could not check the warranty of order {v['order_id']} right now."
    if v["covered"]:
        return f"Order {v['order_id']} is under warranty for {v['years']} years."
    return f"Order {v['order_id']} is not under warranty."


def _unchecked(step: PlanStep) -> tuple[str, str, BaseModel]:
    order_id = int(step["order_id"] or 0)
    return "warranty", str(order_id), WarrantyValue(order_id=order_id, checked=False)


WARRANTY, SPEC = remote_worker(
    name="warranty", graph_id="warranty", description="Checks an order's warranty (remote).",
    owns={"warranty": WarrantyValue}, degraded_fact=_unchecked, needs_order=True,
    requires=("order",), rule=rule, describe=describe, capability="check a warranty",
    produces=lambda step: [f"warranty:{step['order_id']}"])
DEPENDENCIES = [WARRANTY]
WORKERS = [SPEC]
