"""Responder: composes the answer from this request's facts only (a template, no model).

Each fact reads as its worker says (`WorkerSpec.describe`), in the order the workers are
registered; the responder names no fact kind. It never states anything a fact does not say;
the output guard checks that anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from langgraph.runtime import Runtime

from agents.base import WorkerSpec
from agents.drafter import DraftFn, WordingFailed
from agents.rules import unsupported_asks
from graphs.core.answers import AnswerContext, wordable
from graphs.core.state import (
    Draft,
    Event,
    Fact,
    InterlockContext,
    InterlockState,
    Status,
    StepResult,
)

__all__ = ["compose", "make_responder"]


def _what_we_do(workers: Sequence[WorkerSpec]) -> str:
    can = [w.capability for w in workers if w.capability]
    if not can:
        return "I can help with questions about your orders."
    listed = can[0] if len(can) == 1 else ", ".join(can[:-1]) + " and " + can[-1]
    return f"I can {listed}."


def compose(state: InterlockState, workers: Sequence[WorkerSpec]) -> tuple[Draft, Status]:
    """The draft answer and the request's final status."""
    status: Status = state.get("status") or "running"
    error = state.get("error")
    plan = state.get("plan")
    offer = _what_we_do(workers)
    if status in ("refused", "failed") and error and not plan:
        return Draft(statements=[], notices=[error["message"]]), status
    lines: list[str] = []
    fixed: list[str] = []
    notices: list[str] = []
    results: dict[str, StepResult] = state.get("results", {})
    facts: dict[str, Fact] = state.get("facts", {})
    intents = plan["intents"] if plan else []
    steps = plan["steps"] if plan else []
    rank = {w.name: n for n, w in enumerate(workers)}
    by_name = {w.name: w for w in workers}
    owner = {kind: w for w in workers for kind in w.owns}
    mine = [facts[fid] for s in steps if (r := results.get(s["id"]))
            for fid in r["fact_ids"] if fid in facts]
    context = AnswerContext(facts=mine, intents=intents)
    refused_effect = False
    for step in sorted(steps, key=lambda s: rank.get(s["worker"], len(rank))):
        result = results.get(step["id"])
        if result is None:
            continue
        spec = by_name.get(step["worker"])
        if result["status"] in ("failed", "skipped") and not result["fact_ids"]:
            what = f" for #{step['order_id']}" if step["order_id"] else ""
            notices.append(f"I couldn't complete the {step['worker']} check{what}"
                           f" ({result['note'] or result['status']}).")
            continue
        refused_effect |= bool(spec and spec.side_effects and result["status"] == "refused")
        for fid in result["fact_ids"]:
            fact = facts.get(fid)
            writer = owner.get(fact["kind"]) if fact else None
            if fact is not None and writer is not None and writer.describe is not None and (
                    line := writer.describe(fact, context)):
                lines.append(line)
                if writer.side_effects or writer.caution is not None:
                    fixed.append(line)  # what was done, offered or advised: in our words
    if "unsupported" in intents:
        request = state.get("request")
        asks = unsupported_asks(request["text"] if request else "") or ["do that"]
        notices.append(f"I can't {' or '.join(asks)} here. {offer}")
    asks = list(plan.get("asks") or []) if plan else []
    notices.extend(asks)  # a question back instead of a guess, or why a "yes" is not taken
    if "clarify" in intents and not asks:
        notices.append("Which order do you mean? Please include the order number, "
                       "for example 1042.")
    ask_for_order = f"{offer} Tell me the order number, for instance: where is #1042?"
    if "unknown" in intents and not lines:
        notices.append(ask_for_order)
    if error:
        notices.append(error["message"])
    degraded = state.get("degraded") or []
    if degraded:
        notices.append(f"Could not be checked right now: {', '.join(degraded)}.")
    if status == "running":
        all_failed = bool(steps) and all(
            s["id"] in results and results[s["id"]]["status"] in ("failed", "skipped")
            for s in steps)
        status = "failed" if all_failed else ("refused" if refused_effect else "completed")
    if not lines and not notices:
        notices.append(ask_for_order)
    draft = Draft(statements=lines, notices=notices)
    if fixed:
        draft["fixed"] = fixed
    return draft, status


def make_responder(workers: Sequence[WorkerSpec], drafter: DraftFn | None = None, *,
                   redact: Callable[[str], str] = lambda text: text) -> Any:
    """The responder node: writes the draft answer and the final status.

    With a `drafter`, the statements are also sent to be worded (`agents.drafter`), with the
    customer's words passed through `redact` (the output guard's) first; the output guard
    decides whether its wording or the statements make the answer.
    """

    async def responder(state: InterlockState, runtime: Runtime[InterlockContext]
                        ) -> dict[str, Any]:
        draft, status = compose(state, workers)
        events: list[Event] = []
        if drafter is not None and wordable(draft):
            request = state["request"]
            shown = cast(InterlockState, {**state, "request": {
                **request, "text": redact(request["text"])}})
            try:
                draft["wording"] = await drafter(shown, draft, runtime, events)
            except WordingFailed as exc:
                draft["wording_error"] = exc.reason
        update: dict[str, Any] = {"draft_answer": draft, "status": status}
        if events:
            update["events"] = events
        return update

    return responder
