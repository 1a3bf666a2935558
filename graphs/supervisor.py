"""The supervisor graph: intake -> planner -> plan guard -> supervisor <-> workers -> responder.

`build_graph()` assembles it; `graph` is the instance `langgraph.json` serves. The supervisor
(`graphs/executor.py`) executes the validated plan deterministically: every step whose
dependencies are done goes out at once (LangGraph `Send`, so independent steps run in
parallel), the fact guard checks what the workers wrote, and the supervisor goes again, until
the plan is done or the hop limit or the deadline stops it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.errors import NodeError
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command

from agents.base import WorkerDeps, WorkerSpec, as_node, stamp
from agents.conversation import make_remember
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
from graphs.executor import make_after_facts, make_reconciler, make_supervisor
from graphs.settings import Settings, settings_of
from graphs.tracing import configure_tracing
from guards.approval import Advisor, make_approval_guard
from guards.facts import make_fact_guard
from guards.output import redact
from guards.registry import DEFAULT_GUARDS
from guards.stages import Check, GuardStage, StageDeps
from tools.dependencies import Dependency
from tools.spans import thread_of, traced_guard
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


def _ordered(guards: Sequence[GuardStage]) -> dict[str, list[GuardStage]]:
    """The stages at each place, in order; a final stage (the output guard) last."""
    places: dict[str, list[GuardStage]] = {"request": [], "plan": [], "answer": []}
    for stage in guards:
        places[stage.at].append(stage)
    for stages in places.values():
        stages.sort(key=lambda g: g.final)  # stable: the given order, finals last
    if len({g.node for g in guards}) != len(guards):
        raise ValueError("two guard stages share a name")
    if not places["request"] or places["request"][0].name != "intake":
        raise ValueError("the intake guard must be the first request stage")
    if not any(g.name == "plan" for g in places["plan"]):
        raise ValueError("the plan guard (guards.plan.PLAN) must be one of the plan stages: it "
                         "turns the planner's candidate into the plan the supervisor runs")
    if not places["answer"] or not places["answer"][-1].final:
        raise ValueError("an answer stage that writes the answer (the output guard) must be last")
    return places


def _declared(workers: Sequence[WorkerSpec]) -> tuple[list[Any], list[Any]]:
    """Every worker's grounds and claims, once each; what would shadow another is refused.

    A fact kind has one owner, a worker name one worker, and a ground or claim name one
    check: a team's worker that declared `order` again would otherwise replace the check the
    output guard makes of every order number (or take over the wording of another's facts).
    """
    def once(kind: str, items: Sequence[tuple[str, Any]]) -> list[Any]:
        seen: dict[str, Any] = {}
        for name, item in items:
            if name in seen and seen[name] is not item:
                raise ValueError(f"two {kind}s are named {name!r}: name yours differently")
            seen[name] = item
        return list(seen.values())

    once("worker", [(w.name, w) for w in workers])
    owners: dict[str, str] = {}
    for w in workers:
        for kind in w.owns:
            if owners.setdefault(kind, w.name) != w.name:
                raise ValueError(f"fact kind {kind!r} is owned by both {owners[kind]!r} and "
                                 f"{w.name!r}: one worker owns a kind")
    return (once("ground", [(g.name, g) for w in workers for g in w.grounds]),
            once("claim", [(c.name, c) for w in workers for c in w.claims]))


def _stage_node(stage: GuardStage, check: Check, after: str,
                finish: Callable[[InterlockState, str | None], Awaitable[dict[str, Any]]]
                | None = None) -> Any:
    """A stage as a node: it runs the check, records its verdicts and routes on their action.

    `finish` (the last answer stage's) runs on the state as the stage leaves it, in the same
    step: the thread's subject is remembered once the answer is settled, at no extra superstep.
    """
    wants_runtime = len(inspect.signature(check).parameters) > 1

    async def node(state: InterlockState, runtime: Runtime[InterlockContext]) -> Command[Any]:
        result = await (check(state, runtime) if wants_runtime else check(state))
        update = {**result.update, "verdicts": list(result.verdicts)}
        if finish is not None:
            try:
                update.update(await finish(cast(InterlockState, {**state, **update}),
                                           thread_of(runtime)))
            except Exception:  # the answer stands; the subject stays as it was (and says so)
                _log.exception("remembering the subject of thread %s failed",
                               thread_of(runtime))
                if state.get("subject"):
                    update["subject"] = {**state["subject"], "offer": None}
        if result.sends:
            return Command(goto=list(result.sends), update=update)
        action = result.action
        goto = after
        if stage.at != "answer" and action == "skip":
            goto = END
        elif stage.at != "answer" and action in ("refuse", "escalate"):
            goto = "responder"
        elif after == "supervisor":  # the last plan stage: on to work, if there is any
            plan = update["plan"] if "plan" in update else state.get("plan")
            goto = "supervisor" if plan and plan["steps"] else "responder"
        return Command(goto=goto, update=update)

    node.__name__ = stage.node
    return traced_guard(stage.name, node)


def build_graph(*, checkpointer: BaseCheckpointSaver[Any] | None = None,
                settings: Settings | None = None, toolbox: Toolbox | None = None,
                workers: Sequence[WorkerSpec] | None = None,
                guards: Sequence[GuardStage] | None = None,
                dependencies: Sequence[Dependency] = ()) -> InterlockGraph:
    """Assemble and compile the supervisor graph.

    With no checkpointer the caller's (or the LangGraph server's) is used. `toolbox`,
    `workers` and `guards` replace the defaults; `dependencies` registers more dependencies
    (a team's own, with their settings and simulators) beside the settings' own.
    """
    # Traces of this graph leave the process redacted, whoever runs it (server, API, CLI).
    configure_tracing()
    settings = settings_of(settings, toolbox.settings if toolbox else None)
    if dependencies:
        settings = settings.with_dependencies(*dependencies)
    toolbox = toolbox or build_toolbox(settings)
    workers = tuple(workers or (*DEFAULT_WORKERS, *settings.workers))
    places = _ordered(tuple(guards or (*DEFAULT_GUARDS, *settings.guards)))
    clock = toolbox.clock
    grounds, claims = _declared(workers)
    by_name = {w.name: w for w in workers}
    def deps_of(spec: WorkerSpec) -> WorkerDeps:
        if not spec.side_effects:
            return WorkerDeps(toolbox=toolbox, redact=lambda text: redact(text)[0])
        if spec.effects is None:
            raise ValueError(f"worker {spec.name!r} has side effects: declare its EffectRules "
                             f"(`effects=`) for the approval gate")
        advisors = [Advisor(w.name, w.caution) for w in workers
                    if w.caution is not None and spec.name in w.caution.effects]
        return WorkerDeps(toolbox=toolbox, redact=lambda text: redact(text)[0],
                          guards={"approval": traced_guard(
            "approval", make_approval_guard(settings, clock, toolbox, spec.effects,
                                            advisors))})

    effects = tuple(w.name for w in workers if w.side_effects)
    stage_deps = StageDeps(
        settings=settings, clock=clock, workers=by_name, side_effects=effects,
        fallback=lambda text, turn, carried: rules_plan(text, turn=turn, workers=workers,
                                                        carried=carried),
        grounds=grounds, claims=claims)

    builder = StateGraph(InterlockState, context_schema=InterlockContext,
                         input_schema=InputState)
    ends = {"request": "planner", "plan": "supervisor", "answer": END}
    remember = make_remember(offer_ttl_s=settings.offer_ttl_s, side_effects=effects)
    for place, stages in places.items():
        for n, stage in enumerate(stages):
            after = stages[n + 1].node if n + 1 < len(stages) else ends[place]
            routes = {"request": (after, "responder", END, *effects),
                      "plan": (after, "supervisor", "responder"), "answer": (after,)}[place]
            last = place == "answer" and n == len(stages) - 1
            builder.add_node(stage.node, _stage_node(stage, stage.build(stage_deps), after,
                                                     remember if last else None),
                             metadata={"kind": "guard", "guard": stage.name},
                             destinations=tuple(dict.fromkeys(routes)))
    first_plan = places["plan"][0].node
    builder.add_node("planner", make_planner(toolbox, workers, goto=first_plan,
                                             redact=lambda text: redact(text)[0]),
                     metadata={"kind": "planner"}, destinations=(first_plan,))
    produces = {w.name: w.produces for w in workers}
    advisors = {w.name: [a.name for a in workers if w.name in a.advises] for w in workers
                if w.side_effects}
    builder.add_node("supervisor", make_supervisor(settings, clock, produces, advisors),
                     destinations=(*by_name, "responder"))
    for spec in workers:
        deps = deps_of(spec)
        builder.add_node(spec.name, as_node(spec, spec.build(deps), clock),
                         error_handler=_worker_error_handler(spec, deps),
                         # A backstop: the governor keeps calls within the deadline; a worker
                         # stuck anyway is cut here and reported as a failed step. A side
                         # effect gets a fresh deadline after a human decision, hence more.
                         timeout=settings.deadline_s * (2.2 if spec.side_effects else 1.1),
                         metadata={"kind": "worker", "worker": spec.name,
                                   "version": spec.version,
                                   "side_effects": spec.side_effects})
        builder.add_edge(spec.name, "fact_guard")
    builder.add_node("reconciler", make_reconciler(effects),
                     destinations=(*by_name, "responder"))
    builder.add_node("fact_guard", traced_guard(
        "facts", make_fact_guard(clock, {w.name: w.owns for w in workers})),
        metadata={"kind": "guard", "guard": "facts"})
    drafter = settings.drafters[-1].build(toolbox) if settings.drafters else None
    builder.add_node("responder", make_responder(workers, drafter,
                                                 redact=lambda text: redact(text)[0]))
    builder.add_edge(START, places["request"][0].node)
    builder.add_conditional_edges("fact_guard", make_after_facts(settings, clock, produces),
                                  ["supervisor", "responder"])
    builder.add_edge("responder", places["answer"][0].node)
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
