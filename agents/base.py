"""What a worker is: a spec (name, version, owned fact kinds and their schemas) and a subgraph.

To add a worker, copy `agents/policy.py` (one node) or `agents/shipping.py` (a dependency call
with degradation), give it a `SPEC`, and add it to `agents/registry.py`.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from pydantic import BaseModel

from graphs.core.actors import may_act_for, resolve_actor, viewer_of
from graphs.core.answers import AnswerContext, Claim, Ground
from graphs.core.clock import Clock, iso, parse_iso
from graphs.core.effects import Caution, EffectRules
from graphs.core.freshness import scope_of
from graphs.core.state import (
    Event,
    Fact,
    InterlockContext,
    NodeSpan,
    PlanStep,
    StepStatus,
    WorkerInput,
    WorkerOutput,
    WorkerReport,
    WorkerState,
)
from tools.governor import CallContext
from tools.spans import thread_of, thread_tag
from tools.toolbox import Toolbox

if TYPE_CHECKING:
    from agents.rules import RuleContext

# `as_node` passes durability="exit" to subgraphs without a checkpointer (see there); LangGraph
# warns that it has no effect, which is the point.
warnings.filterwarnings("ignore", message="`durability` has no effect when no checkpointer",
                        category=UserWarning)

__all__ = [
    "Node",
    "as_node",
    "WorkerDeps",
    "WorkerGraph",
    "WorkerSpec",
    "call_context",
    "deadline_of",
    "make_fact",
    "report",
    "single_node_worker",
    "stamp",
]

Node = Callable[..., Awaitable[dict[str, Any]]]
"""An async LangGraph node function."""

WorkerGraph = CompiledStateGraph[WorkerState, InterlockContext, WorkerInput, WorkerOutput]


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerDeps:
    """What a worker's builder gets: the toolbox, and guard nodes it must place in its graph."""

    toolbox: Toolbox
    """Store, dependency clients, governor, clock, settings."""
    guards: Mapping[str, Node] = field(default_factory=dict)
    """Guard nodes by name (the approval guard, for workers with side effects)."""
    redact: Callable[[str], str] = field(default=lambda text: text)
    """Takes personal data out of a text before it leaves for a model or another service
    (the output guard's redaction; a remote worker sends the customer's words through it)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSpec:
    """A worker: who it is, which fact kinds it owns, and how to build its subgraph."""

    name: str
    """Node name in the supervisor graph, and the `worker` of its plan steps."""
    version: str
    """The worker's own version, stamped on every fact it writes."""
    description: str
    """One line: what it does (shown in the README and to the LLM planner)."""
    owns: Mapping[str, type[BaseModel]]
    """Fact kinds this worker owns, each with the schema of its `value`."""
    build: Callable[[WorkerDeps], WorkerGraph]
    """Builds the compiled worker subgraph."""
    side_effects: bool = False
    """Whether a step of this worker changes the world (counted by the plan guard)."""
    needs_order: bool = False
    """Whether each step needs an order number."""
    requires: tuple[str, ...] = ()
    """Fact kinds each step needs from the steps it depends on (checked by the plan guard)."""
    produces: Callable[[PlanStep], list[str]] | None = None
    """The fact ids a step yields, so fresh ones can be reused instead of asked for again
    (None: never reused, as for side effects)."""
    on_failure: Callable[[WorkerDeps, WorkerInput, BaseException],
                         Awaitable[dict[str, Any]]] | None = None
    """For workers with side effects: the report (see `report`) of a step that raised or ran
    out of time, from what the world shows (an effect it may have made is reported pending,
    so reconciliation settles it). None: the step is reported failed with no facts."""
    capability: str = ""
    """What it lets the desk do, for customers ("track an order's shipment"): the answer to a
    request the desk cannot do lists these."""
    args: type[BaseModel] | None = None
    """The arguments its steps take besides `order_id` and `amount_cents` (`PlanStep.args`):
    the plan guard validates a step's against it, the LLM planner is shown its JSON schema."""
    mentioned_args: tuple[str, ...] = ()
    """Arguments whose values must appear in the request's text, as order numbers must."""
    rule: Callable[[RuleContext], None] | None = None
    """How the rules planner plans its steps for a request (`agents.rules.RuleContext`)."""
    describe: Callable[[Fact, AnswerContext], str | None] | None = None
    """How one of its facts reads in the answer (None from it: not stated)."""
    grounds: tuple[Ground, ...] = ()
    """What an answer may state that its facts must back (the output guard checks each)."""
    claims: tuple[Claim, ...] = ()
    """Claims only its executed effects may make (the output guard checks each)."""
    effects: EffectRules | None = None
    """For a worker with side effects: what the approval gate applies to its proposals (its
    policy, and its re-check after a human decided); the gate is `deps.guards["approval"]`."""
    caution: Caution | None = None
    """For an advisor: which side effects its facts may send to a human, and why (it can only
    add caution; the plan guard orders the advised steps after its own)."""

    @property
    def advises(self) -> tuple[str, ...]:
        """The side-effecting workers whose steps wait for this worker's (its `caution`)."""
        return self.caution.effects if self.caution is not None else ()


def make_fact(spec: WorkerSpec, step: PlanStep, *, kind: str, subject: str,
              value: BaseModel, source: str, as_of: datetime,
              version: str | None = None) -> Fact:
    """A fact with full provenance (the fact guard validates `value` against the kind's schema)."""
    return Fact(id=f"{kind}:{subject}", kind=kind, subject=subject,
                value=value.model_dump(mode="json"), source=source, version=version,
                as_of=iso(as_of), worker=spec.name, worker_version=spec.version,
                step_id=step["id"], scope="")  # the scope is stamped by `as_node`


def report(spec: WorkerSpec, step: PlanStep, status: StepStatus, facts: list[Fact], *,
           degraded: list[str] | None = None, note: str = "",
           events: list[Event] | None = None) -> dict[str, Any]:
    """The node update that hands a step's outcome back to the supervisor."""
    update: dict[str, Any] = {"inbox": [WorkerReport(
        step_id=step["id"], worker=spec.name, status=status, facts=facts,
        degraded=sorted(set(degraded or [])), note=note)]}
    if events:
        update["events"] = events
    return update


def deadline_of(state: WorkerState, runtime: Runtime[InterlockContext] | None = None
                ) -> datetime:
    """The deadline a step works to.

    The request's, or the invocation's when the run context carries one (a resumed run),
    extended after a human decision (`scratch.deadline_at`).
    """
    context = runtime.context if runtime is not None else None
    deadline = parse_iso(context.deadline_at if context is not None and context.deadline_at
                         else state["request"]["deadline_at"])
    if fresh := state.get("scratch", {}).get("deadline_at"):
        deadline = max(deadline, parse_iso(fresh))
    return deadline


def call_context(state: WorkerState, toolbox: Toolbox,
                 runtime: Runtime[InterlockContext] | None = None) -> CallContext:
    """A call context for this step: its id and what is left of the request's deadline."""
    return CallContext.until(deadline_of(state, runtime), toolbox.clock,
                             step_id=state["step"]["id"], thread_id=thread_of(runtime))


def single_node_worker(spec: WorkerSpec, node: Node) -> WorkerGraph:
    """A worker subgraph with one node (most read-only workers need no more).

    It is compiled without a checkpointer of its own: a single node has no inner step to resume
    (the supervisor graph checkpoints the step that ran it, with its report), and skipping the
    subgraph's own checkpoints halves the checkpoint writes of a request. A worker that can
    interrupt or has more than one step (refunds) keeps its own checkpoints.
    """
    graph = StateGraph(WorkerState, context_schema=InterlockContext, input_schema=WorkerInput,
                       output_schema=WorkerOutput)
    name = getattr(node, "__name__", spec.name)
    graph.add_node(name, node)
    graph.add_edge(START, name)
    graph.add_edge(name, END)
    return graph.compile(name=spec.name, checkpointer=False)


def stamp(spec: WorkerSpec, state: WorkerInput, update: dict[str, Any]) -> dict[str, Any]:
    """A worker's update, its reports named for the worker and its facts scoped to the requester.

    Whatever the worker said: it cannot pass its output off as another worker's, nor a fact
    seen by staff off as a customer's.
    """
    scope = scope_of(viewer_of(state["request"]))
    for item in update.get("inbox", []):
        item["worker"] = spec.name
        for fact in item["facts"]:
            fact["scope"] = scope
    return update


def as_node(spec: WorkerSpec, graph: WorkerGraph, clock: Clock | None = None) -> Node:
    """The supervisor-graph node that runs a worker subgraph for one step.

    It invokes the compiled subgraph (LangGraph nests it: traces, streaming with
    `subgraphs=True`, and for a subgraph with its own checkpoints, interrupts and resume all
    work as for a subgraph node), then stamps the report with the worker's true name and its
    facts with the requester's scope, so a worker cannot pass its output off as another's, nor
    a fact seen by staff off as a customer's. A subgraph compiled without a checkpointer
    runs with `durability="exit"`: it has nothing to persist, and LangGraph 1.2 would otherwise
    wait for a checkpoint write that never comes. The step's own span (`NodeSpan`, by `clock`)
    goes with its report: workers run side by side, and a checkpoint times only the slowest.
    """
    clock = clock or Clock()
    durability: Literal["exit"] | None = "exit" if graph.checkpointer is False else None

    async def run_worker(state: WorkerInput, runtime: Runtime[InterlockContext]
                         ) -> dict[str, Any]:
        step = state["step"]
        invoker = resolve_actor(runtime)
        if not may_act_for(invoker, state["request"]["actor"]):
            # A step whose request claims another actor than the one driving this run did not
            # come through the intake guard (a forged command or state update): refuse it.
            return {"inbox": [WorkerReport(
                step_id=step["id"], worker=spec.name, status="refused", facts=[], degraded=[],
                note=f"refused: a {invoker['kind']} run may not act for this request")]}
        traced: RunnableConfig = {
            "run_name": f"worker:{spec.name}",
            "tags": [t for t in ("worker", f"worker:{spec.name}", thread_tag()) if t],
            "metadata": {"worker": spec.name, "worker_version": spec.version,
                         "plan_step": step["id"], "order_id": step["order_id"]}}
        start = clock.now()
        out: dict[str, Any] = await graph.ainvoke(state, traced, durability=durability)
        update = stamp(spec, state, out)
        update["spans"] = [NodeSpan(node=spec.name, step_id=step["id"], start=iso(start),
                                    end=iso(clock.now()))]
        return update

    run_worker.__name__ = f"run_{spec.name}"
    return run_worker
