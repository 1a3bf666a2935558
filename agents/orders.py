"""Orders worker: reads an order from the store (scoped to the actor) into an `order` fact."""

from __future__ import annotations

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
from graphs.actors import viewer_of
from graphs.state import InterlockContext, WorkerState
from tools.clock import iso

__all__ = ["SPEC", "OrderItem", "OrderValue"]


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


SPEC = WorkerSpec(
    name="orders", version="1.0.0", description="Looks up an order: status, items, amounts.",
    owns={"order": OrderValue}, build=_build,
    produces=lambda step: [f"order:{step['order_id']}"], needs_order=True,
)
