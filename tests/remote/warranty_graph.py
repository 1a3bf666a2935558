"""The remote side: a warranty desk's LangGraph graph, served by a `langgraph dev` of its own.

It knows nothing of Interlock but the worker contract: `{"step", "request", "known"}` in,
`{"status", "facts", "note"}` out.
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict


class WarrantyState(TypedDict, total=False):
    step: dict[str, Any]
    request: dict[str, Any]
    known: dict[str, Any]
    status: str
    note: str
    facts: list[dict[str, Any]]


def check(state: WarrantyState) -> dict[str, Any]:
    order_id = state["step"]["order_id"]
    order = state["known"].get(f"order:{order_id}", {}).get("value", {})
    covered = order.get("status") in ("delivered", "partially_refunded")
    return {"status": "done", "note": "checked by the warranty desk",
            "facts": [{"kind": "warranty", "subject": str(order_id), "source": "warranty-desk",
                     "value": {"order_id": order_id, "covered": covered,
                               "years": 2 if covered else 0}}]}


builder = StateGraph(WarrantyState)
builder.add_node("check", check)
builder.add_edge(START, "check")
builder.add_edge("check", END)
graph = builder.compile()
