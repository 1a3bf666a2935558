"""Orders worker: reads an order from the store (scoped to the actor) into an `order` fact."""

from __future__ import annotations

import re
from typing import Any

from langgraph.runtime import Runtime
from pydantic import BaseModel, ConfigDict, Field

from agents.base import (
    WorkerDeps,
    WorkerGraph,
    WorkerSpec,
    call_context,
    make_fact,
    report,
    single_node_worker,
)
from graphs.core.actors import viewer_of
from graphs.core.answers import MONEY, AnswerContext, Ground, money, plural
from graphs.core.clock import iso
from graphs.core.state import Fact, InterlockContext, WorkerState

__all__ = ["ORDER_NUMBERS", "SPEC", "OrderItem", "OrderValue", "describe"]


class OrderItem(BaseModel):
    """One line of an order."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    sku: str
    name: str
    quantity: int = Field(ge=1)
    unit_cents: int = Field(ge=0)


class OrderValue(BaseModel):
    """The `order` fact: the order as the store knows it, or that it was not found."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    order_id: int
    found: bool
    status: str | None = None
    placed_at: str | None = None
    delivered_at: str | None = None
    total_cents: int | None = Field(default=None, ge=0)
    paid_cents: int | None = Field(default=None, ge=0)
    currency: str | None = None
    items: list[OrderItem] = Field(default_factory=list)


def _build(deps: WorkerDeps) -> WorkerGraph:
    toolbox = deps.toolbox

    async def load_order(state: WorkerState, runtime: Runtime[InterlockContext]
                         ) -> dict[str, Any]:
        step = state["step"]
        order_id = step["order_id"]
        assert order_id is not None  # the plan guard only passes orders steps with an order
        ctx = call_context(state, toolbox, runtime)
        order = await toolbox.store.order(order_id, actor=viewer_of(state["request"]), ctx=ctx)
        now = toolbox.clock.now()
        if order is None:
            value = OrderValue(order_id=order_id, found=False)
            fact = make_fact(SPEC, step, kind="order", subject=str(order_id), value=value,
                             source="store", as_of=now)
            return report(SPEC, step, "not_found", [fact], note=f"order {order_id} not found",
                          events=ctx.events)
        value = OrderValue(
            order_id=order.id, found=True, status=order.status, placed_at=iso(order.placed_at),
            delivered_at=iso(order.delivered_at) if order.delivered_at else None,
            total_cents=order.total_cents, paid_cents=order.paid_cents, currency=order.currency,
            items=[OrderItem(sku=i.sku, name=i.name, quantity=i.quantity,
                             unit_cents=i.unit_cents) for i in order.items])
        fact = make_fact(SPEC, step, kind="order", subject=str(order_id), value=value,
                         source="store", as_of=now)
        return report(SPEC, step, "done", [fact], events=ctx.events)

    return single_node_worker(SPEC, load_order)


def describe(fact: Fact, context: AnswerContext) -> str | None:
    """How an `order` fact reads in the answer."""
    v = fact["value"]
    if not v["found"]:
        return f"I couldn't find order {v['order_id']}."
    items = v.get("items") or []
    count = sum(i["quantity"] for i in items)
    names = ", ".join(i["name"] for i in items)
    status = str(v["status"]).replace("_", " ")
    text = (f"Order {v['order_id']} is {status}: placed {str(v['placed_at'])[:10]}, "
            f"{plural(count, 'item')} ({names}), total "
            f"{money(v['total_cents'], v['currency'])}.")
    if v.get("delivered_at"):
        text += f" Delivered on {str(v['delivered_at'])[:10]}."
    return text


_ORDER_NUMBER = re.compile(r"\border\s+#?(\d{4,9})\b", re.IGNORECASE)

ORDER_NUMBERS = Ground(
    name="order", stated=lambda sentence: _ORDER_NUMBER.findall(sentence),
    backed=lambda fact: [str(fact["value"]["order_id"])] if "order_id" in fact["value"] else [])
"""Order numbers: every "order 1042" a sentence names must be an order a fact is about."""

SPEC = WorkerSpec(
    name="orders", capability="check an order's status", version="1.0.0",
    description="Looks up an order: status, items, amounts.",
    owns={"order": OrderValue}, build=_build,
    produces=lambda step: [f"order:{step['order_id']}"], needs_order=True,
    describe=describe, grounds=(ORDER_NUMBERS, MONEY),
)
