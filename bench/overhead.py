"""Orchestration overhead in one run: Interlock vs bare LangGraph vs langgraph-supervisor.

The same three-worker request ("Where is order 1042 and what is your return policy?": an
order lookup, a live carrier lookup and the policy in force) runs through:

(a) Interlock, with the in-process (instant) simulators and SQLite checkpoints;
(b) a bare LangGraph graph doing the same routing (the same rules planner -> a supervisor
    node that sends every ready step to its worker via `Send` and loops until the plan is
    done -> answer), over the same store and carrier simulator, with the same checkpointer;
    also, for reference, the least LangGraph can do (a hard-wired fan-out, no plan);
(c) langgraph-supervisor, whose supervisor hands off to three ReAct agents, each calling one
    tool over the same store and simulator; the models are scripted fakes (no network).

Every variant writes its checkpoints to SQLite with `durability="sync"`. Prints the median
and p90 ms per request and the ratios. Run with `make bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import operator
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Annotated, Any, TypedDict

import httpx
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from langgraph.prebuilt import create_react_agent
from langgraph.types import Command, Send

from agents.rules import rules_plan
from checkpoints.saver import open_checkpointer
from graphs.core.clock import Clock
from graphs.core.state import STAFF
from graphs.runner import open_interlock
from graphs.settings import Settings
from tools.simulators import CarrierSimulator
from tools.store import Store

MESSAGE = "Where is order 1042 and what is your return policy?"


# -- shared work: the same store and carrier simulator for (b) and (c) -------------------------

class Work:
    """Direct (ungoverned) access to the store and the carrier simulator."""

    def __init__(self, home: Path) -> None:
        self.store = Store(home / "store.db")
        self.carrier = httpx.AsyncClient(
            base_url="http://carrier.sim",
            transport=httpx.MockTransport(CarrierSimulator(home / "store.db")))

    async def order(self) -> str:
        order = await self.store.order(1042, actor=STAFF)
        assert order is not None
        return f"order {order.id} is {order.status}, total {order.total_cents}"

    async def shipping(self) -> str:
        shipment = await self.store.shipment(1042, actor=STAFF)
        assert shipment is not None
        response = await self.carrier.get(f"/v1/shipments/{shipment.tracking_number}")
        return f"shipment {response.json()['status']}"

    async def policy(self) -> str:
        policy = await self.store.policy_at(Clock().now())
        assert policy is not None
        return f"policy {policy.version}: {policy.return_window_days} days"


# -- (b) bare LangGraph ------------------------------------------------------------------------

class BareState(TypedDict, total=False):
    message: str
    steps: list[dict[str, Any]]
    dispatched: list[str]
    results: Annotated[dict[str, str], operator.or_]
    answer: str


def bare_graph(work: Work, checkpointer: Any) -> Any:
    """The same routing without Interlock: plan (the same rules), supervise, fan out, answer.

    What a team would write on LangGraph alone: a planner node, a supervisor node that sends
    every ready step to its worker and loops until the plan is done, plain worker nodes, and
    an answer node. No guards, no provenance, no breakers or retries, no subgraphs.
    """
    jobs: dict[str, Callable[[], Awaitable[str]]] = {
        "orders": work.order, "shipping": work.shipping, "policy": work.policy}

    def planner(state: BareState) -> dict[str, Any]:
        plan = rules_plan(state["message"], turn=1)
        return {"steps": [dict(s) for s in plan["steps"]], "dispatched": []}

    def supervisor(state: BareState) -> Command[Any]:
        done = state.get("results", {})
        ready = [s for s in state["steps"] if s["id"] not in state["dispatched"]
                 and all(d in done for d in s["depends_on"])]
        if not ready:
            return Command(goto="respond")
        return Command(goto=[Send(s["worker"], {"message": s["id"]}) for s in ready],
                       update={"dispatched": state["dispatched"] + [s["id"] for s in ready]})

    def worker(name: str) -> Callable[[BareState], Awaitable[dict[str, Any]]]:
        async def run(state: BareState) -> dict[str, Any]:
            return {"results": {state["message"]: await jobs[name]()}}
        return run

    async def respond(state: BareState) -> dict[str, Any]:
        return {"answer": "; ".join(sorted(state["results"].values()))}

    builder = StateGraph(BareState)
    builder.add_node("planner", planner)
    builder.add_node("supervisor", supervisor, destinations=(*jobs, "respond"))
    for name in jobs:
        builder.add_node(name, worker(name))
        builder.add_edge(name, "supervisor")
    builder.add_node("respond", respond)
    builder.add_edge(START, "planner")
    builder.add_edge("planner", "supervisor")
    builder.add_edge("respond", END)
    return builder.compile(checkpointer=checkpointer)


def fanout_graph(work: Work, checkpointer: Any) -> Any:
    """The least LangGraph can do: a hard-wired fan-out to the three workers, then answer."""
    jobs: dict[str, Callable[[], Awaitable[str]]] = {
        "orders": work.order, "shipping": work.shipping, "policy": work.policy}

    def worker(name: str) -> Callable[[BareState], Awaitable[dict[str, Any]]]:
        async def run(state: BareState) -> dict[str, Any]:
            return {"results": {name: await jobs[name]()}}
        return run

    async def respond(state: BareState) -> dict[str, Any]:
        return {"answer": "; ".join(sorted(state["results"].values()))}

    builder = StateGraph(BareState)
    for name in jobs:
        builder.add_node(name, worker(name))
        builder.add_edge(name, "respond")
    builder.add_node("respond", respond)
    builder.add_conditional_edges(
        START, lambda state: [Send(name, {"message": state["message"]}) for name in jobs],
        list(jobs))
    builder.add_edge("respond", END)
    return builder.compile(checkpointer=checkpointer)


# -- (c) langgraph-supervisor with scripted models ----------------------------------------------

class ScriptedModel(BaseChatModel):
    """A fake chat model whose next message is a pure function of the conversation so far."""

    decide: Callable[[list[BaseMessage]], AIMessage]

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, BaseMessage]:
        return self

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self.decide(messages))])

    async def _agenerate(self, messages: list[BaseMessage], stop: Any = None,
                         run_manager: Any = None, **kwargs: Any) -> ChatResult:
        return self._generate(messages)


def _supervisor_decision(messages: list[BaseMessage]) -> AIMessage:
    done = {m.name for m in messages if isinstance(m, AIMessage) and m.name in (
        "orders", "shipping", "policy")}
    for agent in ("orders", "shipping", "policy"):
        if agent not in done:
            return AIMessage(content="", tool_calls=[{
                "name": f"transfer_to_{agent}", "args": {}, "id": f"h-{agent}-{len(messages)}"}])
    return AIMessage(content="Here is what I found.")


def _agent_decision(tool_name: str) -> Callable[[list[BaseMessage]], AIMessage]:
    def decide(messages: list[BaseMessage]) -> AIMessage:
        last = messages[-1]
        if isinstance(last, ToolMessage) and last.name == tool_name:
            return AIMessage(content=str(last.content))
        return AIMessage(content="", tool_calls=[{"name": tool_name, "args": {},
                                                  "id": f"t-{tool_name}-{len(messages)}"}])
    return decide


def supervisor_graph(work: Work, checkpointer: Any) -> Any:
    @tool
    async def lookup_order() -> str:
        """Look up order 1042."""
        return await work.order()

    @tool
    async def track_shipment() -> str:
        """Track the shipment of order 1042."""
        return await work.shipping()

    @tool
    async def current_policy() -> str:
        """The refund policy in force."""
        return await work.policy()

    # Imported here: the bare graph is also served by Aegra, whose environment lacks it.
    from langgraph_supervisor import create_supervisor

    agents = [
        create_react_agent(ScriptedModel(decide=_agent_decision(t.name)), [t], name=name)
        for name, t in (("orders", lookup_order), ("shipping", track_shipment),
                        ("policy", current_policy))]
    workflow = create_supervisor(agents, model=ScriptedModel(decide=_supervisor_decision))
    return workflow.compile(checkpointer=checkpointer)


# -- timing -------------------------------------------------------------------------------------

Runner = Callable[[int], Awaitable[None]]


async def measure(requests: int, warmup: int, root: Path) -> dict[str, list[float]]:
    """Time each variant, interleaved request by request so that drift hits all alike.

    Every variant has its own SQLite checkpoint file (the same saver, the same settings).
    """
    settings = Settings(home=root / "interlock")
    work = Work(settings.home)  # the same seeded store and carrier data
    async with AsyncExitStack() as stack:
        app = await stack.enter_async_context(open_interlock(settings))

        async def interlock(i: int) -> None:
            result = await app.run(MESSAGE)
            assert result.status == "completed", result.answer

        runners: dict[str, Runner] = {"interlock": interlock}
        for name, build in (("bare-langgraph", bare_graph), ("bare-fanout", fanout_graph)):
            saver = await stack.enter_async_context(open_checkpointer(root / f"{name}.db"))
            graph = build(work, saver)

            async def bare_run(i: int, graph: Any = graph, name: str = name) -> None:
                out = await graph.ainvoke({"message": MESSAGE},
                                          {"configurable": {"thread_id": f"{name}{i}"}},
                                          durability="sync")
                assert len(out["results"]) == 3
            runners[name] = bare_run

        saver = await stack.enter_async_context(open_checkpointer(root / "supervisor.db"))
        sup = supervisor_graph(work, saver)

        async def sup_run(i: int) -> None:
            out = await sup.ainvoke({"messages": [{"role": "user", "content": MESSAGE}]},
                                    {"configurable": {"thread_id": f"s{i}"},
                                     "recursion_limit": 100}, durability="sync")
            answered = {m.name for m in out["messages"] if isinstance(m, AIMessage)}
            assert {"orders", "shipping", "policy"} <= answered, answered
        runners["langgraph-supervisor"] = sup_run

        samples: dict[str, list[float]] = {name: [] for name in runners}
        for i in range(-warmup, requests):
            for name, run in runners.items():
                started = time.perf_counter()
                await run(i)
                if i >= 0:
                    samples[name].append((time.perf_counter() - started) * 1000)
        return samples


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {sys.platform}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="interlock-bench-") as tmp:
        samples = asyncio.run(measure(args.requests, args.warmup, Path(tmp)))
    medians = {name: statistics.median(s) for name, s in samples.items()}
    p90 = {name: statistics.quantiles(s, n=10)[-1] for name, s in samples.items()}
    ratios = {"interlock/bare-langgraph": medians["interlock"] / medians["bare-langgraph"],
              "interlock/bare-fanout": medians["interlock"] / medians["bare-fanout"],
              "interlock/langgraph-supervisor": (medians["interlock"]
                                                 / medians["langgraph-supervisor"])}
    if args.json:
        print(json.dumps({"machine": _machine(), "requests": args.requests,
                          "median_ms": medians, "p90_ms": p90, "ratios": ratios}, indent=2))
        return 0
    print(f"machine: {_machine()}")
    print(f"request: {MESSAGE!r} x {args.requests} (after {args.warmup} warm-up), "
          f"SQLite checkpoints, durability=sync\n")
    print("| variant | median ms | p90 ms |\n|---|---:|---:|")
    for name in samples:
        print(f"| {name} | {medians[name]:.2f} | {p90[name]:.2f} |")
    print()
    print(f"Interlock / bare LangGraph:       {ratios['interlock/bare-langgraph']:.2f}x "
          f"(target <= 2.0x)")
    print(f"Interlock / langgraph-supervisor: {ratios['interlock/langgraph-supervisor']:.2f}x "
          f"(target <= 0.4x)")
    print(f"Interlock / bare fan-out:         {ratios['interlock/bare-fanout']:.2f}x "
          f"(reference: no planning at all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
