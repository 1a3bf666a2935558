"""Intake guard: the first node of every request (size, type, language, who is asking).

A bad request ends here with a clear message; nothing downstream runs, so there is never a
half-done side effect. The offending message is replaced in state by a short stub, so later
checkpoints do not carry megabytes of rejected input.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime, timedelta
from typing import Any

from langchain_core.messages import AnyMessage, HumanMessage
from langgraph.graph import END
from langgraph.runtime import Runtime
from langgraph.types import Command, Overwrite

from graphs.actors import may_act_for, resolve_actor
from graphs.errors import InputError
from graphs.settings import Settings
from graphs.state import (
    Actor,
    ErrorInfo,
    InterlockContext,
    InterlockState,
    RequestInfo,
    Verdict,
)
from tools.clock import Clock, iso

__all__ = ["MAX_BYTES", "check_message", "make_intake_guard"]

MAX_BYTES = 8 * 1024
"""Largest accepted message, in UTF-8 bytes."""
GUARD = "intake"


def check_message(content: Any) -> str:
    """The request text if it is acceptable; InputError saying why not otherwise."""
    if not isinstance(content, str):
        if isinstance(content, list) and all(
                isinstance(p, dict) and p.get("type") == "text" for p in content):
            content = "".join(str(p.get("text", "")) for p in content)
        else:
            raise InputError("Only text messages are supported.")
    try:
        size = len(content.encode("utf-8"))
    except UnicodeEncodeError:
        raise InputError("The message is not valid text (it contains binary data).") from None
    if size > MAX_BYTES:
        raise InputError(f"The message is {size:,} bytes; the limit is {MAX_BYTES:,} bytes.")
    text = str(content).strip()
    if not text:
        raise InputError("The message is empty; ask about an order, a shipment, a refund or "
                         "our refund policy.")
    controls = sum(1 for ch in text if unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn")
                   and ch not in "\n\r\t")
    if controls:
        raise InputError("The message contains binary or control characters.")
    letters = [ch for ch in text if ch.isalpha()]
    if letters and sum(1 for ch in letters if ch.isascii()) / len(letters) < 0.5:
        raise InputError("I can only help in English for now.", field="language")
    return text


def _last_human(messages: list[AnyMessage]) -> HumanMessage | None:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message
    return None


def _id_of(message: HumanMessage | None) -> str:
    # LangGraph's message reducer gives every message an id when the input is written.
    return str(message.id) if message is not None and message.id else ""


def _already_handled(previous: RequestInfo, message: HumanMessage, now: datetime
                     ) -> Command[str]:
    """A message sent again (a client retrying its POST): answer as before, run nothing.

    The reducer has already put the resent message in place of the first one; the text the
    earlier turn accepted is put back, so the record keeps what was acted on.
    """
    verdict = Verdict(guard=GUARD, passed=True, action="skip",
                      reasons=[f"duplicate: message {message.id} was handled in turn "
                               f"{previous['turn']}; nothing was run again"],
                      fact_ids=[], step_id=None, turn=previous["turn"], at=iso(now))
    update: dict[str, Any] = {"verdicts": [verdict]}
    # A refused message was kept only as a stub; its resend is not kept either.
    kept = previous["text"] or "[rejected by the intake guard; sent again]"
    if message.content != kept:
        update["messages"] = [HumanMessage(content=kept, id=message.id)]
    return Command(goto=END, update=update)


def make_intake_guard(settings: Settings, clock: Clock) -> Any:
    """The intake guard node."""

    async def intake_guard(state: InterlockState, runtime: Runtime[InterlockContext]
                           ) -> Command[str]:
        previous = state.get("request")
        turn = (previous["turn"] + 1) if previous else 1
        now = clock.now()
        actor: Actor = resolve_actor(runtime)
        context = runtime.context
        deadline = (context.deadline_at if context is not None and context.deadline_at
                    else iso(now + timedelta(seconds=settings.deadline_s)))
        message = _last_human(state.get("messages", []))
        reset: dict[str, Any] = {
            "plan": None, "candidate_plan": None, "planner_fallback": None, "dispatched": [],
            "refreshed": [], "hops": 0,
            "inbox": Overwrite([]), "degraded": [], "status": "running", "error": None,
        }
        owner = state.get("owner") or actor
        try:
            if message is None:
                raise InputError("No user message was given.")
            if not may_act_for(actor, owner):
                # A thread belongs to whoever started it; another customer learns nothing.
                raise InputError("This conversation was not found.", field="thread")
            if previous and message.id == previous.get("message_id"):
                return _already_handled(previous, message, now)
            text = check_message(message.content)
        except InputError as exc:
            update: dict[str, Any] = {
                **reset, "status": "refused", "error": ErrorInfo(code=exc.code,
                                                                 message=exc.message),
                "verdicts": [Verdict(guard=GUARD, passed=False, action="refuse",
                                     reasons=[f"{exc.field}: {exc.message}"], fact_ids=[],
                                     step_id=None, turn=turn, at=iso(now))],
            }
            if message is not None:
                stub = f"[rejected by the intake guard: {exc.message}]"
                update["messages"] = [HumanMessage(content=stub, id=message.id)]
            update["request"] = RequestInfo(turn=turn, message_id=_id_of(message), text="",
                                            received_at=iso(now), deadline_at=deadline,
                                            actor=actor)
            return Command(goto="responder", update=update)
        assert message is not None
        request = RequestInfo(turn=turn, message_id=_id_of(message), text=text,
                              received_at=iso(now), deadline_at=deadline, actor=actor)
        verdict = Verdict(guard=GUARD, passed=True, action="allow",
                          reasons=[f"actor: {request['actor']['kind']}"], fact_ids=[],
                          step_id=None, turn=turn, at=iso(now))
        return Command(goto="planner", update={**reset, "request": request, "owner": owner,
                                               "verdicts": [verdict]})

    return intake_guard
