"""The planner node: the LLM overlay when a model is configured, the rules planner otherwise."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import Command

from agents.base import WorkerSpec
from agents.llm_planner import conversation_context, model_plan, system_prompt
from agents.rules import rules_plan, with_advisors
from graphs.core.clock import iso, parse_iso
from graphs.core.conversation import Resolution, is_confirmation, resolve
from graphs.core.errors import InputError
from graphs.core.freshness import scope_of
from graphs.core.state import ErrorInfo, Event, InterlockContext, InterlockState
from tools.errors import DependencyError
from tools.governor import CallContext
from tools.spans import thread_of
from tools.toolbox import Toolbox

__all__ = ["make_planner"]


def _unredacted(text: str) -> str:
    return text


def make_planner(toolbox: Toolbox, workers: Sequence[WorkerSpec], *,
                 goto: str = "plan_guard",
                 redact: Callable[[str], str] = _unredacted) -> Any:
    """The planner node; it proposes `candidate_plan` (or an `error`) to the plan stages.

    `goto` is the first plan stage's node (the graph builder passes it); `redact` takes
    personal data out of the conversation before a model sees it (the output guard's).
    What the request refers back to in the thread's subject (`it`, a "yes" to an offer) is
    resolved here for the rules planner, and judged again by the plan guard.
    """
    prompt = system_prompt(workers) if toolbox.model is not None else None

    async def planner(state: InterlockState, runtime: Runtime[InterlockContext]
                      ) -> Command[str]:
        request = state["request"]
        text, turn = request["text"], request["turn"]
        update: dict[str, Any] = {}
        by = scope_of(request["actor"])
        subject = state.get("subject")
        try:
            carried = resolve(text, subject, by=by, turn=turn,
                              now=parse_iso(request["received_at"]), thread=thread_of(runtime))
        except InputError:
            carried = Resolution()  # the rules planner says what is wrong with the amount
        # A "yes" carries out exactly the offer that stands: nothing for a model to plan.
        if toolbox.model is not None and not is_confirmation(text):
            ctx = CallContext.until(parse_iso(request["deadline_at"]), toolbox.clock,
                                    step_id=f"t{turn}.plan", thread_id=thread_of(runtime))
            try:
                context = conversation_context(state.get("messages", []), subject, by=by,
                                               redact=redact) if turn > 1 else None
                plan = with_advisors(await model_plan(
                    toolbox.model, text, turn=turn, workers=workers, ctx=ctx, prompt=prompt,
                    context=context), text, turn=turn, workers=workers)
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
            plan = rules_plan(text, turn=turn, workers=workers, carried=carried)
        except InputError as exc:
            # The plan guard records the refusal; the planner only proposes.
            return Command(goto=goto, update={
                **update, "candidate_plan": None,
                "error": ErrorInfo(code=exc.code, message=exc.message)})
        return Command(goto=goto, update={**update, "candidate_plan": plan})

    return planner
