"""A bare StateGraph: a router and two nodes that call their services directly, no model."""

from __future__ import annotations

from typing import Any

import httpx
from langgraph.graph import END, START, MessagesState, StateGraph

__all__ = ["graph"]


def route(state: MessagesState) -> str:
    """Order questions go to tracking, the rest to the policy."""
    return "track" if "order" in str(state["messages"][-1].content).lower() else "policy"


async def track(state: MessagesState) -> dict[str, Any]:
    """Ask the carrier where the parcel is."""
    async with httpx.AsyncClient() as client:
        response = await client.get("http://carrier.example/v1/shipments/1042")
    return {"messages": [{"role": "assistant", "content": response.text}]}


async def policy(state: MessagesState) -> dict[str, Any]:
    """Read the return policy from the policy service."""
    async with httpx.AsyncClient() as client:
        response = await client.get("http://policy.example/v1/policy")
    return {"messages": [{"role": "assistant", "content": response.text}]}


builder: StateGraph[Any, Any, Any, Any] = StateGraph(MessagesState)
builder.add_node("track", track)
builder.add_node("policy", policy)
builder.add_conditional_edges(START, route, ["track", "policy"])
builder.add_edge("track", END)
builder.add_edge("policy", END)
graph = builder.compile()
"""Router, then one service call, then the answer."""
