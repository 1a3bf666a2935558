"""The supervisor graph: intake -> planner -> plan guard -> supervisor <-> workers -> responder.

`build_graph()` assembles it; `graph` is the instance `langgraph.json` serves. The supervisor
executes the validated plan deterministically: every step whose dependencies are done goes out
at once (LangGraph `Send`, so independent steps run in parallel), the fact guard checks what
the workers wrote, and the supervisor goes again, until the plan is done or the hop limit or
the deadline stops it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.errors import NodeError
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command, Send

from agents.base import WorkerDeps, WorkerSpec, as_node
from agents.planner import make_planner
from agents.registry import DEFAULT_WORKERS
from agents.responder import make_responder
from agents.rules import rules_plan
from graphs.settings import Settings
from graphs.state import (
    ErrorInfo,
    InputState,
    InterlockContext,
    InterlockState,
    StepResult,
    WorkerInput,
    WorkerReport,
)
from guards.approval import make_approval_guard
from guards.facts import make_fact_guard
from guards.intake import make_intake_guard
from guards.output import make_output_guard
from guards.plan import make_plan_guard
from tools.clock import Clock, parse_iso
from tools.toolbox import Toolbox, build_toolbox

__all__ = ["build_graph", "graph", "pending_effects"]

InterlockGraph = CompiledStateGraph[InterlockState, InterlockContext, InputState, InterlockState]

graph: InterlockGraph
"""The instance `langgraph.json` serves; built on first access (see `__getattr__`)."""


def make_supervisor(settings: Settings, clock: Clock) -> Any:
    """The supervisor node."""

    async def supervisor(state: InterlockState, runtime: Runtime[InterlockContext]
                         ) -> Command[Any]:
        plan = state["plan"]
        assert plan is not None
        request = state["request"]
        hops = state.get("hops", 0) + 1
        if hops > settings.max_hops:
            return Command(goto="responder", update={
                "hops": hops, "status": "failed",
                "error": ErrorInfo(code="hop_limit", message=(
                    f"I stopped after {settings.max_hops} supervisor hops (the hop limit) "
                    f"before the plan was done."))})
        results = dict(state.get("results", {}))
        dispatched = list(state.get("dispatched", []))
        skipped: dict[str, StepResult] = {}
        context = runtime.context
        deadline = parse_iso(context.deadline_at if context is not None and context.deadline_at
                             else request["deadline_at"])
        late = clock.now() >= deadline
        progress = True
        while progress:  # skip, to a fixpoint, steps that can no longer run
            progress = False
            for step in plan["steps"]:
                if step["id"] in dispatched or step["id"] in results:
                    continue
                broken = [d for d in step["depends_on"]
                          if d in results and results[d]["status"] in ("failed", "skipped")]
                if late or broken:
                    note = ("the request's deadline passed" if late else
                            f"step {broken[0]} did not complete")
                    results[step["id"]] = skipped[step["id"]] = StepResult(
                        step_id=step["id"], worker=step["worker"], status="skipped",
                        fact_ids=[], note=note)
                    progress = True
        ready = [s for s in plan["steps"] if s["id"] not in dispatched
                 and s["id"] not in results and all(d in results for d in s["depends_on"])]
        update: dict[str, Any] = {"hops": hops}
        if skipped:
            update["results"] = skipped
        if not ready:
            return Command(goto="responder", update=update)
        facts = state.get("facts", {})
        sends = [Send(step["worker"], WorkerInput(
            step=step, request=request,
            facts={fid: facts[fid] for dep in step["depends_on"]
                   for fid in results[dep]["fact_ids"] if fid in facts}))
            for step in ready]
        update["dispatched"] = dispatched + [s["id"] for s in ready]
        return Command(goto=sends, update=update)

    return supervisor


def pending_effects(state: InterlockState) -> dict[str, str]:
    """Side effects of the current request left unsettled: step id -> `reconcile` or `run`.

    `reconcile`: the outcome is unknown (the request may have landed); `run`: the effect was
    not made because the dependency was unavailable, and may be tried again.
    """
    plan = state.get("plan")
    facts = state.get("facts", {})
    unsettled: dict[str, str] = {}
    for step in plan["steps"] if plan else []:
        fact = facts.get(f"refund:{step['id']}")
        if fact is None:
            continue
        if fact["value"].get("status") == "pending":
            unsettled[step["id"]] = "reconcile"
        elif fact["value"].get("status") == "failed" and fact["value"].get("retryable"):
            unsettled[step["id"]] = "run"
    return unsettled


async def reconciler(state: InterlockState) -> Command[Any]:
    """Send each unsettled side effect of the current request back to its worker.

    Reached only by `Command(goto="reconciler")` (what `interlock resume` does for a finished
    request that left a refund pending or undone): an unknown outcome is settled by asking
    the service, then retrying the same idempotency key; an effect the dependency refused to
    take runs its step again (assessment, approval guard, payment with the same key).
    """
    plan = state["plan"]
    assert plan is not None
    facts = state.get("facts", {})
    results = state.get("results", {})
    steps = {s["id"]: s for s in plan["steps"]}
    unsettled = pending_effects(state)
    if not unsettled:
        return Command(goto="responder")
    sends = []
    for sid, mode in unsettled.items():
        step = steps[sid]
        own = {f"refund:{sid}": facts[f"refund:{sid}"]}
        inputs = own if mode == "reconcile" else {
            fid: facts[fid] for dep in step["depends_on"]
            for fid in results[dep]["fact_ids"] if fid in facts}
        sends.append(Send(step["worker"], WorkerInput(
            step=step, request=state["request"], facts=inputs,
            mode="reconcile" if mode == "reconcile" else "run")))
    return Command(goto=sends)


def after_facts(state: InterlockState) -> str:
    """Route after the fact guard: back to the supervisor while steps remain, else answer.

    A conditional edge, not a node: when the last wave is in, going through the supervisor
    once more would only cost a superstep (and a checkpoint) to learn that nothing is left.
    """
    plan = state.get("plan")
    results = state.get("results", {})
    if plan and any(step["id"] not in results for step in plan["steps"]):
        return "supervisor"
    return "responder"


def _worker_error_handler(spec: WorkerSpec) -> Any:
    """A worker that raises reports a failed step instead of failing the run."""

    async def on_worker_error(state: WorkerInput, error: NodeError) -> Command[str]:
        step = state["step"]
        # Route explicitly: when every worker of a wave fails, no worker edge would fire.
        return Command(goto="fact_guard", update={"inbox": [WorkerReport(
            step_id=step["id"], worker=spec.name, status="failed", facts=[], degraded=[],
            note=f"{spec.name} failed: {type(error.error).__name__}")]})

    on_worker_error.__name__ = f"{spec.name}_error"
    return on_worker_error


def build_graph(*, checkpointer: BaseCheckpointSaver[Any] | None = None,
                settings: Settings | None = None, toolbox: Toolbox | None = None,
                workers: Sequence[WorkerSpec] | None = None) -> InterlockGraph:
    """Assemble and compile the supervisor graph.

    With no checkpointer the caller's (or the LangGraph server's) is used. `toolbox` and
    `workers` replace the defaults (tests use them to inject fakes and extra workers).
    """
    settings = settings or (toolbox.settings if toolbox else Settings.from_env())
    toolbox = toolbox or build_toolbox(settings)
    workers = tuple(workers or DEFAULT_WORKERS)
    clock = toolbox.clock
    by_name = {w.name: w for w in workers}
    deps = WorkerDeps(toolbox=toolbox,
                      guards={"approval": make_approval_guard(settings, clock)})

    builder = StateGraph(InterlockState, context_schema=InterlockContext,
                         input_schema=InputState)
    builder.add_node("intake_guard", make_intake_guard(settings, clock),
                     destinations=("planner", "responder"))
    builder.add_node("planner", make_planner(toolbox, workers),
                     destinations=("plan_guard",))
    builder.add_node("plan_guard", make_plan_guard(
        settings, clock, by_name, lambda text, turn: rules_plan(text, turn=turn)),
        destinations=("supervisor", "responder"))
    builder.add_node("supervisor", make_supervisor(settings, clock),
                     destinations=(*by_name, "responder"))
    for spec in workers:
        builder.add_node(spec.name, as_node(spec, spec.build(deps)),
                         error_handler=_worker_error_handler(spec),
                         # A backstop: the governor keeps calls within the deadline; a worker
                         # stuck anyway is cut here and reported as a failed step.
                         timeout=settings.deadline_s * 1.1,
                         metadata={"kind": "worker", "worker": spec.name,
                                   "version": spec.version})
        builder.add_edge(spec.name, "fact_guard")
    builder.add_node("reconciler", reconciler, destinations=(*by_name, "responder"))
    builder.add_node("fact_guard", make_fact_guard(clock, {w.name: w.owns for w in workers}))
    builder.add_node("responder", make_responder())
    builder.add_node("output_guard", make_output_guard(clock))
    builder.add_edge(START, "intake_guard")
    builder.add_conditional_edges("fact_guard", after_facts, ["supervisor", "responder"])
    builder.add_edge("responder", "output_guard")
    builder.add_edge("output_guard", END)
    return builder.compile(checkpointer=checkpointer, name="interlock")


def __getattr__(name: str) -> Any:
    """`graph`: the instance `langgraph.json` serves, built on first access.

    Built lazily so that importing this module (the CLI, tests) neither reads the environment
    nor compiles a graph it does not use; `from graphs.supervisor import graph` still works.
    """
    if name == "graph":
        compiled = build_graph()
        globals()["graph"] = compiled
        return compiled
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
