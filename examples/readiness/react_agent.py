"""A prebuilt ReAct agent with an HTTP tool, run as a node with a RetryPolicy."""

from __future__ import annotations

from typing import Any

import httpx
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import create_react_agent
from langgraph.types import RetryPolicy

__all__ = ["graph"]


@tool
async def track_order(order_id: str) -> str:
    """Where an order's parcel is, from the carrier."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        response = await client.get(f"http://carrier.example/v1/shipments/{order_id}")
        response.raise_for_status()
        return response.text


agent = create_react_agent(
    ChatOpenAI(model="gpt-4o-mini", api_key="sk-example",  # type: ignore[arg-type]
               base_url="http://model.example/v1"),
    [track_order], prompt="You help customers with their orders.")

builder: StateGraph[Any, Any, Any, Any] = StateGraph(MessagesState)
builder.add_node("agent", agent, retry_policy=RetryPolicy(max_attempts=3))
builder.add_edge(START, "agent")
graph = builder.compile()
"""The agent as one node that LangGraph retries up to three times."""
