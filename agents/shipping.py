"""Shipping worker: finds the order's shipment in the store and asks the carrier for its status.

When the carrier cannot be reached, the worker still reports what the store knows (carrier,
tracking number, ship date) with `live=False`, and names `carrier` as degraded.
"""

from __future__ import annotations

import re
from typing import Any

from langgraph.runtime import Runtime
from pydantic import BaseModel, ConfigDict

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
from graphs.core.answers import AnswerContext, Ground
from graphs.core.clock import iso
from graphs.core.state import Fact, InterlockContext, WorkerState
from tools.errors import DependencyError

__all__ = ["SPEC", "TRACKING_NUMBERS", "ShipmentValue", "describe"]


class ShipmentValue(BaseModel):
    """The `shipment` fact: where an order's parcel is, live from the carrier when possible."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    order_id: int
    found: bool
    carrier: str | None = None
    tracking_number: str | None = None
    shipped_at: str | None = None
    live: bool = False
    status: str | None = None
    eta: str | None = None
    last_event: str | None = None
    unavailable_reason: str | None = None


def _build(deps: WorkerDeps) -> WorkerGraph:
    toolbox = deps.toolbox

    async def track_shipment(state: WorkerState, runtime: Runtime[InterlockContext]
                             ) -> dict[str, Any]:
        step = state["step"]
        order_id = step["order_id"]
        assert order_id is not None
        ctx = call_context(state, toolbox, runtime)
        shipment = await toolbox.store.shipment(order_id, actor=viewer_of(state["request"]),
                                                ctx=ctx)
        now = toolbox.clock.now()
        if shipment is None:
            fact = make_fact(SPEC, step, kind="shipment", subject=str(order_id),
                             value=ShipmentValue(order_id=order_id, found=False),
                             source="store", as_of=now)
            return report(SPEC, step, "not_found", [fact], note="no shipment",
                          events=ctx.events)
        base = ShipmentValue(order_id=order_id, found=True, carrier=shipment.carrier,
                             tracking_number=shipment.tracking_number,
                             shipped_at=iso(shipment.shipped_at))
        try:
            tracking = await toolbox.carrier.track(shipment.tracking_number, ctx)
        except DependencyError as exc:
            value = base.model_copy(update={"unavailable_reason": exc.reason})
            fact = make_fact(SPEC, step, kind="shipment", subject=str(order_id), value=value,
                             source="store", as_of=now)
            return report(SPEC, step, "degraded", [fact], degraded=["carrier"],
                          note=f"carrier unavailable ({exc.reason})", events=ctx.events)
        if tracking is None:
            value = base.model_copy(update={"unavailable_reason": "unknown_to_carrier"})
            fact = make_fact(SPEC, step, kind="shipment", subject=str(order_id), value=value,
                             source="store", as_of=now)
            return report(SPEC, step, "done", [fact], note="carrier does not know the parcel",
                          events=ctx.events)
        value = base.model_copy(update={"live": True, "status": tracking.status,
                                        "eta": tracking.eta, "last_event": tracking.last_event})
        fact = make_fact(SPEC, step, kind="shipment", subject=str(order_id), value=value,
                         source="carrier", as_of=tracking.as_of)
        return report(SPEC, step, "done", [fact], events=ctx.events)

    return single_node_worker(SPEC, track_shipment)


def describe(fact: Fact, context: AnswerContext) -> str | None:
    """How a `shipment` fact reads in the answer (nothing when its order was not found)."""
    v = fact["value"]
    order = context.find("order", order_id=v["order_id"])
    if not v["found"]:
        found = order is not None and order["value"].get("found")
        return f"Order {v['order_id']} has not shipped yet." if found else None
    if v["live"]:
        status = str(v["status"]).replace("_", " ")
        text = (f"The shipment of order {v['order_id']} is {status} with {v['carrier']} "
                f"(tracking {v['tracking_number']})")
        if v.get("eta") and v["status"] != "delivered":
            text += f", expected {str(v['eta'])[:10]}"
        return text + (f". Latest: {v['last_event']}." if v.get("last_event") else ".")
    if v.get("unavailable_reason") == "unknown_to_carrier":
        return (f"{v['carrier']} does not know tracking number {v['tracking_number']} for order "
                f"{v['order_id']} yet.")
    return (f"I couldn't reach the carrier to check live tracking for order {v['order_id']} "
            f"right now. It shipped with {v['carrier']} on {str(v['shipped_at'])[:10]} "
            f"(tracking {v['tracking_number']}).")


_TRACKING = re.compile(r"\b((?:[A-Z][A-Z0-9]|\d[A-Z])\d{8,16})\b")

TRACKING_NUMBERS = Ground(
    name="tracking", stated=lambda sentence: _TRACKING.findall(sentence),
    backed=lambda fact: [str(n) for n in [fact["value"].get("tracking_number")] if n],
    personal_looking=True)
"""Tracking numbers: every one a sentence names must be a shipment's (kept through redaction,
which they would otherwise look like)."""

SPEC = WorkerSpec(
    name="shipping", capability="track an order's shipment", version="1.0.0",
    description="Tracks an order's shipment with the carrier (live status, ETA, last event).",
    owns={"shipment": ShipmentValue}, build=_build,
    produces=lambda step: [f"shipment:{step['order_id']}"], needs_order=True,
    describe=describe, grounds=(TRACKING_NUMBERS,),
)
