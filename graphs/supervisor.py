"""The supervisor graph: intake -> planner -> plan guard -> supervisor <-> workers -> responder.

`build_graph()` assembles it; `graph` is the instance `langgraph.json` serves. The supervisor
(`graphs/executor.py`) executes the validated plan deterministically: every step whose
dependencies are done goes out at once (LangGraph `Send`, so independent steps run in
parallel), the fact guard checks what the workers wrote, and the supervisor goes again, until
the plan is done or the hop limit or the deadline stops it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.errors import NodeError
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command

from agents.base import WorkerDeps, WorkerSpec, as_node, stamp
from agents.planner import make_planner
from agents.registry import DEFAULT_WORKERS
from agents.responder import make_responder
from agents.rules import rules_plan
from graphs.core.state import (
    InputState,
    InterlockContext,
    InterlockState,
    WorkerInput,
    WorkerReport,
)
from graphs.executor import make_after_facts, make_supervisor, reconciler
from graphs.settings import Settings, settings_of
from graphs.tracing import configure_tracing
from guards.approval import make_approval_guard
from guards.facts import make_fact_guard
from guards.intake import make_intake_guard
from guards.output import make_output_guard
from guards.plan import make_plan_guard
from tools.spans import traced_guard
from tools.toolbox import Toolbox, build_toolbox

__all__ = ["build_graph", "graph"]  # noqa: F822 (`graph` comes from `__getattr__`, on first use)

_log = logging.getLogger(__name__)
InterlockGraph = CompiledStateGraph[InterlockState, InterlockContext, InputState, InterlockState]



def _worker_error_handler(spec: WorkerSpec, deps: WorkerDeps) -> Any:
    """A worker that raises or times out reports its step instead of failing the run."""

    async def on_worker_error(state: WorkerInput, error: NodeError) -> Command[str]:
        step = state["step"]
        note = f"{spec.name} failed: {type(error.error).__name__}"
        update: dict[str, Any] = {"inbox": [WorkerReport(
            step_id=step["id"], worker=spec.name, status="failed", facts=[], degraded=[],
            note=note)]}
        if spec.on_failure is not None:
            # A side effect may have been sent before the failure: the worker says what the
            # world shows, so a payment in flight is settled later instead of forgotten.
            try:
                update = stamp(spec, state, await spec.on_failure(deps, state, error.error))
            except Exception:  # the plain failed report stands; say why it is not better
                _log.exception("%s: on_failure hook failed for step %s", spec.name, step["id"])
        # Route explicitly: when every worker of a wave fails, no worker edge would fire.
        return Command(goto="fact_guard", update=update)

    on_worker_error.__name__ = f"{spec.name}_error"
    return on_worker_error


def build_graph(*, checkpointer: BaseCheckpointSaver[Any] | None = None,
                settings: Settings | None = None, toolbox: Toolbox | None = None,
                workers: Sequence[WorkerSpec] | None = None) -> InterlockGraph:
    """Assemble and compile the supervisor graph.

    With no checkpointer the caller's (or the LangGraph server's) is used. `toolbox` and
    `workers` replace the defaults (tests use them to inject fakes and extra workers).
    """
    # Traces of this graph leave the process redacted, whoever runs it (server, API, CLI).
    configure_tracing()
    settings = settings_of(settings, toolbox.settings if toolbox else None)
    toolbox = toolbox or build_toolbox(settings)
    workers = tuple(workers or DEFAULT_WORKERS)
    clock = toolbox.clock
    by_name = {w.name: w for w in workers}
    deps = WorkerDeps(toolbox=toolbox, guards={"approval": traced_guard(
        "approval", make_approval_guard(settings, clock, toolbox))})

    builder = StateGraph(InterlockState, context_schema=InterlockContext,
                         input_schema=InputState)
    effects = tuple(w.name for w in workers if w.side_effects)
    builder.add_node("intake_guard", traced_guard("intake", make_intake_guard(
        settings, clock, effects)), metadata={"kind": "guard", "guard": "intake"},
        destinations=("planner", "responder", END, *effects))
    builder.add_node("planner", make_planner(toolbox, workers), metadata={"kind": "planner"},
                     destinations=("plan_guard",))
    builder.add_node("plan_guard", traced_guard("plan", make_plan_guard(
        settings, clock, by_name,
        lambda text, turn: rules_plan(text, turn=turn, workers=workers))),
        metadata={"kind": "guard", "guard": "plan"},
        destinations=("supervisor", "responder"))
    produces = {w.name: w.produces for w in workers}
    builder.add_node("supervisor", make_supervisor(settings, clock, produces),
                     destinations=(*by_name, "responder"))
    for spec in workers:
        builder.add_node(spec.name, as_node(spec, spec.build(deps)),
                         error_handler=_worker_error_handler(spec, deps),
                         # A backstop: the governor keeps calls within the deadline; a worker
                         # stuck anyway is cut here and reported as a failed step. A side
                         # effect gets a fresh deadline after a human decision, hence more.
                         timeout=settings.deadline_s * (2.2 if spec.side_effects else 1.1),
                         metadata={"kind": "worker", "worker": spec.name,
                                   "version": spec.version})
        builder.add_edge(spec.name, "fact_guard")
    builder.add_node("reconciler", reconciler, destinations=(*by_name, "responder"))
    builder.add_node("fact_guard", traced_guard(
        "facts", make_fact_guard(clock, {w.name: w.owns for w in workers})),
        metadata={"kind": "guard", "guard": "facts"})
    builder.add_node("responder", make_responder(workers))
    builder.add_node("output_guard", traced_guard("output", make_output_guard(
        clock, [g for w in workers for g in w.grounds], [c for w in workers for c in w.claims])),
                     metadata={"kind": "guard", "guard": "output"})
    builder.add_edge(START, "intake_guard")
    builder.add_conditional_edges("fact_guard", make_after_facts(settings, clock, produces),
                                  ["supervisor", "responder"])
    builder.add_edge("responder", "output_guard")
    builder.add_edge("output_guard", END)
    return builder.compile(checkpointer=checkpointer, name="interlock")


def __getattr__(name: str) -> Any:
    """`graph`: the graph built from the environment, on first use (not at import).

    `from graphs.supervisor import graph` keeps working; the LangGraph server serves the one
    `graphs/server.py` builds.
    """
    if name == "graph":
        from graphs.server import graph

        return graph
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
