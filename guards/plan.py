"""Plan guard: only a sound plan reaches the supervisor.

Rejects unknown workers, bad dependencies (missing, cyclic, or a step that does not wait for
the facts it needs), too many steps or side effects, and any order number or amount the
request never mentioned, with two exceptions read from the thread's subject: an order the same
actor named earlier in the thread, when the request refers back to it alone (the verdict
records it under `from_turn`), and the amount of an offer the request confirms while it still
stands. A rejected model plan falls back to the rules planner; the rejection is recorded as a
verdict either way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol, cast

from langgraph.runtime import Runtime
from pydantic import BaseModel, ValidationError

from graphs.core.answers import plural
from graphs.core.clock import Clock, iso, parse_iso
from graphs.core.conversation import Resolution, resolve
from graphs.core.errors import InputError
from graphs.core.freshness import scope_of
from graphs.core.plans import compute_waves, find_cycle, mentions
from graphs.core.state import (
    ErrorInfo,
    InterlockContext,
    InterlockState,
    Plan,
    PlanStep,
    Verdict,
)
from guards.config import GuardSettings
from guards.stages import Check, GuardStage, StageResult
from tools.spans import thread_of

__all__ = ["PLAN", "WorkerTraits", "advised", "make_plan_guard", "plan_problems"]

GUARD = "plan"


class WorkerTraits(Protocol):
    """What the plan guard needs to know of a worker (`agents.base.WorkerSpec` has it)."""

    @property
    def name(self) -> str:
        """The worker's name."""

    @property
    def side_effects(self) -> bool:
        """Whether its steps change the world."""

    @property
    def needs_order(self) -> bool:
        """Whether each step needs an order number."""

    @property
    def requires(self) -> tuple[str, ...]:
        """Fact kinds its steps need from the steps they depend on."""

    @property
    def owns(self) -> Mapping[str, Any]:
        """Fact kinds it owns."""

    @property
    def args(self) -> type[BaseModel] | None:
        """The arguments its steps take besides the order and amount."""

    @property
    def mentioned_args(self) -> tuple[str, ...]:
        """Arguments whose values must appear in the request."""

    @property
    def advises(self) -> tuple[str, ...]:
        """Side-effecting workers whose steps on the same order wait for this worker's."""


def advised(steps: list[PlanStep], workers: Mapping[str, WorkerTraits]
            ) -> tuple[list[PlanStep], list[str]]:
    """The steps with every advised side effect waiting for its advisor, and what was added.

    A step of a worker that advises a side effect (a claims assessment before a refund) must
    finish before that worker's steps on the same order run, so the approval gate sees its
    facts: the guard adds the wait whoever planned the steps, and says so.
    """
    linked: list[PlanStep] = []
    added: list[str] = []
    for step in steps:
        advisors = [s["id"] for s in steps if s["id"] != step["id"]
                    and (w := workers.get(s["worker"])) is not None
                    and step["worker"] in w.advises and s["order_id"] == step["order_id"]
                    and s["id"] not in step["depends_on"]]
        if advisors:
            step = cast(PlanStep, {**step, "depends_on": [*step["depends_on"], *advisors]})
            added.extend(f"advised: {step['id']} ({step['worker']}) waits for {a} "
                         f"({next(s['worker'] for s in steps if s['id'] == a)})"
                         for a in advisors)
        advising = [d for d in step["depends_on"] if any(
            s["id"] == d and (w := workers.get(s["worker"])) is not None
            and step["worker"] in w.advises for s in steps)]
        if advising or "advised_by" in step:  # whoever planned it: only the guard marks it
            step = cast(PlanStep, {k: v for k, v in step.items() if k != "advised_by"})
            if advising:
                step["advised_by"] = advising
        linked.append(step)
    return linked, added


def _confirms(step: PlanStep, worker: WorkerTraits, carried: Resolution) -> bool:
    """Whether `step` carries out exactly the offer the request confirms."""
    offer = carried.confirms
    return (offer is not None and worker.side_effects and offer["worker"] == worker.name
            and offer["order_id"] == step["order_id"]
            and offer["amount_cents"] == step["amount_cents"])


def plan_problems(plan: Plan, text: str, *, turn: int, settings: GuardSettings,
                  workers: Mapping[str, WorkerTraits],
                  carried: Resolution | None = None) -> list[str]:
    """Everything wrong with `plan` for the request `text` (empty: the plan is sound).

    `carried` is what the request refers back to in the thread's subject (`resolve`).
    """
    carried = carried or Resolution()
    problems: list[str] = []
    steps = plan["steps"]
    if len(steps) > settings.max_steps:
        problems.append(f"too_many_steps: {len(steps)} > {settings.max_steps}")
    found = mentions(text)
    by_id = {s["id"]: s for s in steps}
    if len(by_id) != len(steps):
        problems.append("duplicate_step_ids")
    owner_of = {kind: w.name for w in workers.values() for kind in w.owns}
    id_format = re.compile(rf"^t{turn}\.s\d+$")
    seen: set[tuple[str, int | None]] = set()
    effects = 0
    for step in steps:
        sid, worker = step["id"], workers.get(step["worker"])
        if not id_format.match(sid):
            problems.append(f"bad_step_id: {sid}")
        if worker is None:
            problems.append(f"unknown_worker: {step['worker']} ({sid})")
            continue
        if (step["worker"], step["order_id"]) in seen:
            problems.append(f"duplicate_step: {step['worker']} for order {step['order_id']}")
        seen.add((step["worker"], step["order_id"]))
        effects += worker.side_effects
        order_id, amount = step["order_id"], step["amount_cents"]
        if worker.needs_order and order_id is None:
            problems.append(f"missing_order: {sid} ({worker.name}) needs an order number")
        if not worker.needs_order and order_id is not None:
            problems.append(f"unexpected_order: {sid} ({worker.name}) takes no order number")
        if order_id is not None and order_id not in found.order_ids and (
                order_id not in carried.order_ids):
            problems.append(f"unmentioned_order: {order_id} does not appear in the request"
                            + (" (it could be any of "
                               + ", ".join(str(o) for o in carried.ambiguous) + ")"
                               if order_id in carried.ambiguous else ""))
        if worker.side_effects and order_id is not None and order_id not in found.order_ids \
                and order_id in carried.order_ids and len(carried.order_ids) > 1:
            problems.append(f"ambiguous_order: {sid} ({worker.name}) would act on one of the "
                            f"earlier orders {', '.join(str(o) for o in carried.order_ids)}; "
                            f"a side effect needs its order named, or the only one that fits")
        if amount is not None and not worker.side_effects:
            problems.append(f"unexpected_amount: {sid} ({worker.name}) takes no amount")
        if amount is not None and amount not in found.amounts_cents and not _confirms(
                step, worker, carried):
            problems.append(f"unmentioned_amount: {amount} cents does not appear in the request"
                            + (f" ({carried.refusal})" if carried.refusal else ""))
        if "confirms" in step and not _confirms(step, worker, carried):
            problems.append(f"bad_confirmation: {sid} carries out an offer the request does not "
                            f"confirm, or that no longer stands")
        problems.extend(_args_problems(step, worker, text))
        for dep in step["depends_on"]:
            if dep not in by_id:
                problems.append(f"unknown_dependency: {sid} depends on {dep}")
        for kind in worker.requires:
            providers = [by_id[d] for d in step["depends_on"] if d in by_id
                         and by_id[d]["worker"] == owner_of.get(kind)
                         and (kind != "order" or by_id[d]["order_id"] == order_id)]
            if not providers:
                problems.append(f"bad_order: {sid} ({worker.name}) must wait for a step that "
                                f"provides its {kind} fact")
    if effects > settings.max_side_effects:
        problems.append(f"too_many_side_effects: {effects} > {settings.max_side_effects}")
    if cycle := find_cycle(advised(steps, workers)[0]):
        problems.append(f"dependency_cycle: {' -> '.join(cycle)}")
    return problems


def _args_problems(step: PlanStep, worker: WorkerTraits, text: str) -> list[str]:
    """What is wrong with a step's own arguments (its worker's `args` schema)."""
    sid, given = step["id"], step.get("args")
    if worker.args is None:
        return [f"unexpected_args: {sid} ({worker.name}) takes no arguments"] if given else []
    try:
        worker.args.model_validate(given or {})
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "args"
        return [f"bad_args: {sid} ({worker.name}) {where}: {first.get('msg')}"]
    said = " ".join(text.split()).casefold()
    return [f"unmentioned_arg: {name}={value!r} does not appear in the request"
            for name in worker.mentioned_args
            if (value := (given or {}).get(name)) is not None
            and str(value).casefold() not in said]


def _carried_over(plan: Plan, text: str, carried: Resolution) -> tuple[dict[str, int], list[str]]:
    """The orders the plan takes from the subject (order -> turn), and why, for the verdict."""
    named = set(mentions(text).order_ids)
    used = {s["order_id"] for s in plan["steps"] if s["order_id"] is not None
            and s["order_id"] not in named and s["order_id"] in carried.from_turn}
    from_turn = {str(o): carried.from_turn[o] for o in sorted(used)}
    how = ("offered in" if carried.confirms is not None or carried.open_offer is not None
           else "named by the same actor in")
    reasons = [f"from_turn: order {o} was {how} turn {t}" for o, t in from_turn.items()]
    if carried.open_offer is not None:
        offer = carried.open_offer
        reasons.append(f"answers_offer: the request answers the offer of turn {offer['turn']} "
                       f"({offer['summary']}) with an amount of its own; that amount is "
                       f"offered, and nothing moves until a yes")
    if carried.confirms is not None and any("confirms" in s for s in plan["steps"]):
        offer = carried.confirms
        reasons.append(f"confirms: the offer of turn {offer['turn']} ({offer['summary']}), "
                       f"which still stands")
    return from_turn, reasons


def _with_confirmations(steps: list[PlanStep], workers: Mapping[str, WorkerTraits],
                        carried: Resolution, text: str) -> list[PlanStep]:
    """The steps as the guard lets them run.

    A step that carries out the confirmed offer is marked with it (as it stands); a side
    effect on an order the request only reached by answering an offer with an amount, or
    that the planner marked so, only proposes (`offer_only`), whoever planned it.
    """
    named = set(mentions(text).order_ids)
    marked: list[PlanStep] = []
    for step in steps:
        worker = workers.get(step["worker"])
        cautious = bool(step.get("offer_only"))  # a planner may always ask for less
        step = cast(PlanStep, {k: v for k, v in step.items()
                               if k not in ("confirms", "offer_only")})
        if worker is not None and worker.side_effects and (cautious or (
                carried.open_offer is not None and step["order_id"] not in named)):
            step["offer_only"] = True
        elif worker is not None and carried.confirms is not None and _confirms(
                step, worker, carried):
            step["confirms"] = carried.confirms
        marked.append(step)
    return marked


def make_plan_guard(settings: GuardSettings, clock: Clock, workers: Mapping[str, WorkerTraits],
                    fallback: Callable[[str, int, Resolution | None], Plan]) -> Check:
    """The plan guard's check; `fallback(text, turn, carried)` is the rules planner."""

    async def plan_guard(state: InterlockState, runtime: Runtime[InterlockContext]
                         ) -> StageResult:
        request = state["request"]
        text, turn = request["text"], request["turn"]
        candidate = state.get("candidate_plan")
        try:
            carried = resolve(text, state.get("subject"), by=scope_of(request["actor"]),
                              turn=turn, now=parse_iso(request["received_at"]),
                              thread=thread_of(runtime))
        except InputError:
            carried = Resolution()
        verdicts: list[Verdict] = []
        if fallback_reason := state.get("planner_fallback"):
            verdicts.append(Verdict(guard=GUARD, passed=False, action="refuse",
                                    reasons=[f"model_plan_unusable: {fallback_reason}; "
                                             f"the rules planner stood in"],
                                    fact_ids=[], step_id=None, turn=turn, at=iso(clock.now())))
        if candidate is None:  # the planner could not read the request
            error = state.get("error") or ErrorInfo(code="bad_input",
                                                    message="I could not read the request.")
            return StageResult(verdicts=[*verdicts, Verdict(
                guard=GUARD, passed=False, action="refuse",
                reasons=[f"{error['code']}: {error['message']}"], fact_ids=[], step_id=None,
                turn=turn, at=iso(clock.now()))], update={
                    "plan": None, "status": "refused", "error": error})

        def verdict(plan: Plan, problems: list[str]) -> Verdict:
            if problems:
                return Verdict(guard=GUARD, passed=False, action="refuse", reasons=problems,
                               fact_ids=[], step_id=None, turn=turn, at=iso(clock.now()))
            from_turn, why = _carried_over(plan, text, carried)
            allowed = Verdict(guard=GUARD, passed=True, action="allow",
                              reasons=[f"plan from {plan['source']}: "
                                       f"{plural(len(plan['steps']), 'step')}", *why,
                                       *advised(plan["steps"], workers)[1]],
                              fact_ids=[], step_id=None, turn=turn, at=iso(clock.now()))
            if from_turn:
                allowed["from_turn"] = from_turn
            return allowed

        try:
            problems = plan_problems(candidate, text, turn=turn, settings=settings,
                                     workers=workers, carried=carried)
            verdicts.append(verdict(candidate, problems))
            plan = candidate
            if problems and candidate["source"] == "model":
                plan = fallback(text, turn, carried)
                problems = plan_problems(plan, text, turn=turn, settings=settings,
                                         workers=workers, carried=carried)
                verdicts.append(verdict(plan, problems))
        except InputError as exc:
            return StageResult(verdicts=[*verdicts, Verdict(
                guard=GUARD, passed=False, action="refuse", reasons=[exc.message],
                fact_ids=[], step_id=None, turn=turn, at=iso(clock.now()))], update={
                    "plan": None, "status": "refused",
                    "error": ErrorInfo(code=exc.code, message=exc.message)})
        if problems:
            message = ("I can't do all of that in one request: "
                       + "; ".join(p.split(": ", 1)[-1] for p in problems) + ".")
            return StageResult(verdicts=verdicts, update={
                "plan": None, "status": "refused",
                "error": ErrorInfo(code="refused", message=message)})
        steps, _ = advised(_with_confirmations(plan["steps"], workers, carried, text), workers)
        checked = Plan(source=plan["source"], intents=plan["intents"], steps=steps,
                       waves=compute_waves(steps))
        if plan.get("asks"):
            checked["asks"] = list(plan.get("asks") or [])
        return StageResult(verdicts=verdicts, update={"plan": checked})

    return plan_guard


PLAN = GuardStage(name="plan", at="plan", build=lambda deps: make_plan_guard(
    deps.settings, deps.clock, deps.workers, deps.fallback))
"""Only a sound plan reaches the supervisor."""
