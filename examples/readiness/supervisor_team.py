"""A langgraph-supervisor team as teams write it: ChatOpenAI agents, handoffs, HTTP tools."""

from __future__ import annotations

import httpx
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.prebuilt import create_react_agent
from langgraph_supervisor import create_supervisor

__all__ = ["graph"]


@tool
async def track_order(order_id: str) -> str:
    """Where an order's parcel is, from the carrier."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://carrier.example/v1/shipments/{order_id}")
        response.raise_for_status()
        return response.text


@tool
async def return_policy(topic: str) -> str:
    """The store's return policy on a topic."""
    async with httpx.AsyncClient() as client:
        response = await client.get("http://policy.example/v1/policy", params={"topic": topic})
        response.raise_for_status()
        return response.text


model = ChatOpenAI(model="gpt-4o-mini", api_key="sk-example",  # type: ignore[arg-type]
                   base_url="http://model.example/v1")
tracker = create_react_agent(model, [track_order], name="tracker",
                             prompt="You track parcels.")
policy_expert = create_react_agent(model, [return_policy], name="policy_expert",
                                   prompt="You answer questions on the return policy.")
graph = create_supervisor([tracker, policy_expert], model=model,
                          prompt="Route each question to the right expert.").compile()
"""The team: a supervisor handing off to a tracker and a policy expert."""
