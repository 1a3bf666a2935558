"""The supervisor's execution rules: dispatch, reuse, refresh, skip, and settle side effects.

- every step whose dependencies are done goes out at once (`Send`): parallel where the plan
  allows, in order where it says so;
- a step whose facts are already in state, fresh, and of the same scope is answered from state
  (a `reuse` event) instead of asking again; a fact that went stale before the answer is
  refreshed by running its step once more (a `refresh` event);
- a step whose dependency failed, or that the deadline leaves no time for, is skipped;
- a hop limit ends any runaway plan with status `failed`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import Command, Send

from graphs.core.actors import viewer_of
from graphs.core.clock import Clock, iso, parse_iso
from graphs.core.freshness import scope_of, staleness
from graphs.core.plans import dependency_facts
from graphs.core.state import (
    ErrorInfo,
    Event,
    Fact,
    InterlockContext,
    InterlockState,
    PlanStep,
    RequestInfo,
    StepResult,
    WorkerInput,
)
from graphs.settings import Settings
from tools.spans import thread_of

__all__ = ["EffectMode", "Produces", "make_after_facts", "make_reconciler", "make_supervisor",
           "pending_effects", "side_effecting"]

Produces = Mapping[str, Callable[[PlanStep], list[str]] | None]
"""For each worker, the fact ids a step yields (None: its steps are never reused)."""


EffectMode = Literal["reconcile", "run"]
"""How an unsettled side effect is settled: ask and retry its key, or run its step again."""


def _event(kind: str, step: PlanStep, clock: Clock, thread: str | None,
           **detail: Any) -> Event:
    return Event(at=iso(clock.now()), kind=kind, dependency=None, thread_id=thread,
                 step_id=step["id"], detail=detail)


def _fresh_facts(step: PlanStep, state: InterlockState, produces: Produces,
                 settings: Settings, now: datetime) -> list[str] | None:
    """The step's facts if every one is in state, in scope and fresh (none from a degraded step)."""
    make = produces.get(step["worker"])
    if make is None:
        return None
    request = state["request"]
    facts = state.get("facts", {})
    ids = make(step)
    scope = scope_of(viewer_of(request))
    request_at = parse_iso(request["received_at"])
    results = state.get("results", {})
    for fid in ids:
        fact = facts.get(fid)
        if fact is None or fact.get("scope") != scope or staleness(
                fact, now=now, request_at=request_at, ttls=settings.fact_ttls):
            return None
        made = results.get(fact["step_id"])
        if made is not None and made["status"] == "degraded":
            return None  # what could not be checked then is asked again, not reused
    return ids


def _stale_steps(state: InterlockState, produces: Produces, settings: Settings,
                 now: datetime) -> dict[str, str]:
    """Steps of this request whose facts went stale before the answer (not refreshed yet)."""
    plan = state.get("plan")
    results = state.get("results", {})
    facts = state.get("facts", {})
    refreshed = set(state.get("refreshed", []))
    request_at = parse_iso(state["request"]["received_at"])
    stale: dict[str, str] = {}
    for step in plan["steps"] if plan else []:
        result = results.get(step["id"])
        if result is None or step["id"] in refreshed or produces.get(step["worker"]) is None:
            continue
        for fid in result["fact_ids"]:
            if fid in facts and (why := staleness(facts[fid], now=now, request_at=request_at,
                                                  ttls=settings.fact_ttls)):
                stale[step["id"]] = why
                break
    return stale


def make_supervisor(settings: Settings, clock: Clock, produces: Produces,
                    advisors: Mapping[str, Collection[str]] | None = None) -> Any:
    """The supervisor node.

    `advisors`: for each side-effecting worker, the workers whose facts advise it
    (`WorkerSpec.caution`); what they said about a step's order in this thread goes with it.
    """
    advice_of = advisors or {}

    async def supervisor(state: InterlockState, runtime: Runtime[InterlockContext]
                         ) -> Command[Any]:
        plan = state["plan"]
        assert plan is not None
        request = state["request"]
        thread = thread_of(runtime)
        hops = state.get("hops", 0) + 1
        if hops > settings.max_hops:
            return Command(goto="responder", update={
                "hops": hops, "status": "failed",
                "error": ErrorInfo(code="hop_limit", message=(
                    f"I stopped after {settings.max_hops} supervisor hops (the hop limit) "
                    f"before the plan was done."))})
        now = clock.now()
        results = dict(state.get("results", {}))
        dispatched = list(state.get("dispatched", []))
        steps = {s["id"]: s for s in plan["steps"]}
        update: dict[str, Any] = {"hops": hops}
        events: list[Event] = []
        new_results: dict[str, StepResult] = {}
        context = runtime.context
        deadline = parse_iso(context.deadline_at if context is not None and context.deadline_at
                             else request["deadline_at"])
        late = now >= deadline
        progress = True
        while progress:  # to a fixpoint: skip what can no longer run, reuse what is fresh
            progress = False
            for step in plan["steps"]:
                if step["id"] in dispatched or step["id"] in results:
                    continue
                advice = step.get("advised_by", [])  # an advisor's failure stops nothing
                broken = [d for d in step["depends_on"] if d not in advice
                          and d in results and results[d]["status"] in ("failed", "skipped")]
                if late or broken:
                    note = ("the request's deadline passed" if late else
                            f"step {broken[0]} did not complete")
                    results[step["id"]] = new_results[step["id"]] = StepResult(
                        step_id=step["id"], worker=step["worker"], status="skipped",
                        fact_ids=[], note=note)
                    progress = True
                elif all(d in results for d in step["depends_on"]) and (
                        reused := _fresh_facts(step, state, produces, settings, now)):
                    facts = state.get("facts", {})
                    origin = results.get(facts[reused[0]]["step_id"])
                    results[step["id"]] = new_results[step["id"]] = StepResult(
                        step_id=step["id"], worker=step["worker"],
                        status=origin["status"] if origin else "done", fact_ids=reused,
                        note="reused: still fresh")
                    events.append(_event("reuse", step, clock, thread, facts=reused,
                                         as_of=[facts[f]["as_of"] for f in reused]))
                    progress = True
        ready = [s for s in plan["steps"] if s["id"] not in dispatched
                 and s["id"] not in results and all(d in results for d in s["depends_on"])]
        if not ready and not late:
            stale = _stale_steps({**state, "results": results}, produces, settings, now)
            for step_id, why in stale.items():
                events.append(_event("refresh", steps[step_id], clock, thread, reason=why))
            ready = [steps[sid] for sid in stale]
            if ready:
                update["refreshed"] = [*state.get("refreshed", []), *stale]
        if new_results:
            update["results"] = new_results
        if events:
            update["events"] = events
        if not ready:
            return Command(goto="responder", update=update)
        known = state.get("facts", {})
        gaps = dict(state.get("advice_gaps", {}))
        sends = []
        for step in ready:
            sent = _input(step, request, results, known, advice_of.get(step["worker"], ()),
                          gaps)
            if (missing := sent.get("unadvised")) and step["order_id"] is not None:
                gaps[str(step["order_id"])] = list(dict.fromkeys(
                    [*gaps.get(str(step["order_id"]), []), *missing]))
                update["advice_gaps"] = {str(step["order_id"]): gaps[str(step["order_id"])]}
            sends.append(Send(step["worker"], sent))
        update["dispatched"] = dispatched + [s["id"] for s in ready if s["id"] not in dispatched]
        return Command(goto=sends, update=update)

    return supervisor


def _input(step: PlanStep, request: RequestInfo, results: Mapping[str, StepResult],
           known: Mapping[str, Fact], advisors: Collection[str] = (),
           gaps: Mapping[str, list[str]] | None = None) -> WorkerInput:
    """What a worker is sent for a step: the step, and what its dependencies established.

    A step its advisors advise also gets what they said about its order in this thread, in
    any turn (`advice`: a doubt raised before an offer still stands when it is accepted), and
    the advising steps that established nothing about it (`unadvised`: of this plan, or of an
    earlier turn, `gaps`).
    """
    sent = WorkerInput(step=step, request=request,
                       facts=dependency_facts(step, results, known))
    if advisors and step["order_id"] is not None and (advice := {
            fid: fact for fid, fact in known.items() if fact["worker"] in advisors
            and fact["subject"] == str(step["order_id"])}):
        sent["advice"] = advice
    unadvised = [f"{d} ({results[d]['worker']}) {results[d]['status']}"
                 for d in step.get("advised_by", [])
                 if d in results and not results[d]["fact_ids"]]
    if advisors and step["order_id"] is not None:
        unadvised = list(dict.fromkeys([*(gaps or {}).get(str(step["order_id"]), []),
                                        *unadvised]))
    if unadvised:
        sent["unadvised"] = unadvised
    return sent


def make_after_facts(settings: Settings, clock: Clock, produces: Produces
                     ) -> Callable[[InterlockState], str]:
    """Route after the fact guard: to the supervisor while steps remain or facts went stale.

    A conditional edge, not a node: when the last wave is in and its facts are fresh, going
    through the supervisor once more would only cost a superstep to learn nothing is left.
    """

    def after_facts(state: InterlockState) -> str:
        plan = state.get("plan")
        results = state.get("results", {})
        if plan and any(step["id"] not in results for step in plan["steps"]):
            return "supervisor"
        if _stale_steps(state, produces, settings, clock.now()):
            return "supervisor"
        return "responder"

    return after_facts


def pending_effects(state: Mapping[str, Any], effects: Collection[str]
                    ) -> dict[str, EffectMode]:
    """Side effects of the current request left unsettled: step id -> `reconcile` or `run`.

    `effects` names the workers with side effects (a read-only worker's step is never one).
    `reconcile`: the outcome is unknown (the request may have landed); `run`: the effect was
    not made because the dependency was unavailable, and may be tried again.
    """
    plan = state.get("plan")
    steps = {step["id"] for step in plan["steps"]
             if step["worker"] in effects} if plan else set()
    unsettled: dict[str, EffectMode] = {}
    for fact in state.get("facts", {}).values():
        if fact["step_id"] not in steps or not isinstance(fact["value"], dict):
            continue
        if fact["value"].get("status") == "pending":
            unsettled[fact["step_id"]] = "reconcile"
        elif fact["value"].get("status") == "failed" and fact["value"].get("retryable"):
            unsettled.setdefault(fact["step_id"], "run")
    return unsettled


def make_reconciler(effects: Collection[str]) -> Any:
    """The reconciler node of a graph whose side-effecting workers are `effects`."""

    async def reconciler(state: InterlockState) -> Command[Any]:
        return _reconcile(state, effects)

    return reconciler


def _reconcile(state: InterlockState, effects: Collection[str]) -> Command[Any]:
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
    unsettled = pending_effects(state, effects)
    if not unsettled:
        return Command(goto="responder")
    sends = []
    for sid, mode in unsettled.items():
        step = steps[sid]
        own = {fid: fact for fid, fact in facts.items() if fact["step_id"] == sid}
        inputs = own if mode == "reconcile" else dependency_facts(step, results, facts)
        sends.append(Send(step["worker"], WorkerInput(
            step=step, request=state["request"], facts=inputs,
            mode=mode)))
    # What the earlier attempt reported no longer stands until the steps report again.
    return Command(goto=sends, update={"degraded": [], "status": "running", "error": None})


def side_effecting(graph: Any) -> frozenset[str]:
    """The workers of a compiled supervisor graph that have side effects (node metadata)."""
    return frozenset(name for name, node in graph.nodes.items()
                     if (node.metadata or {}).get("side_effects"))
