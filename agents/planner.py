"""The planner node: the LLM overlay when a model is configured, the rules planner otherwise."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import Command

from agents.base import WorkerSpec
from agents.llm_planner import model_plan, system_prompt
from agents.rules import rules_plan
from graphs.core.clock import iso, parse_iso
from graphs.core.errors import InputError
from graphs.core.state import ErrorInfo, Event, InterlockContext, InterlockState
from tools.errors import DependencyError
from tools.governor import CallContext
from tools.spans import thread_of
from tools.toolbox import Toolbox

__all__ = ["make_planner"]


def make_planner(toolbox: Toolbox, workers: Sequence[WorkerSpec], *,
                 goto: str = "plan_guard") -> Any:
    """The planner node; it proposes `candidate_plan` (or an `error`) to the plan stages.

    `goto` is the first plan stage's node (the graph builder passes it).
    """
    prompt = system_prompt(workers) if toolbox.model is not None else None

    async def planner(state: InterlockState, runtime: Runtime[InterlockContext]
                      ) -> Command[str]:
        request = state["request"]
        text, turn = request["text"], request["turn"]
        update: dict[str, Any] = {}
        if toolbox.model is not None:
            ctx = CallContext.until(parse_iso(request["deadline_at"]), toolbox.clock,
                                    step_id=f"t{turn}.plan", thread_id=thread_of(runtime))
            try:
                plan = await model_plan(toolbox.model, text, turn=turn, workers=workers,
                                        ctx=ctx, prompt=prompt)
                return Command(goto=goto,
                               update={"candidate_plan": plan, "events": ctx.events})
            except DependencyError as exc:
                update["planner_fallback"] = f"{exc.reason}: {exc.message}"
                if exc.reason != "malformed_output":  # the model was unreachable, not wrong
                    update["degraded"] = ["model"]
                ctx.events.append(Event(at=iso(toolbox.clock.now()), kind="fallback",
                                        dependency="model", thread_id=ctx.thread_id,
                                        step_id=ctx.step_id,
                                        detail={"to": "rules", "reason": exc.reason}))
                update["events"] = ctx.events
        try:
            plan = rules_plan(text, turn=turn, workers=workers)
        except InputError as exc:
            # The plan guard records the refusal; the planner only proposes.
            return Command(goto=goto, update={
                **update, "candidate_plan": None,
                "error": ErrorInfo(code=exc.code, message=exc.message)})
        return Command(goto=goto, update={**update, "candidate_plan": plan})

    return planner
