"""Intake guard: the first node of every request (size, type, language, who is asking).

A bad request ends here with a clear message; nothing downstream runs, so there is never a
half-done side effect. The offending message is replaced in state by a short stub, so later
checkpoints do not carry megabytes of rejected input.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.runtime import Runtime
from langgraph.types import Overwrite, Send

from graphs.core.actors import may_act_for, resolve_actor, server_owner, viewer_for
from graphs.core.clock import Clock, iso, parse_iso
from graphs.core.errors import InputError
from graphs.core.plans import dependency_facts
from graphs.core.state import (
    STUB_MARK,
    Actor,
    ErrorInfo,
    InterlockContext,
    InterlockState,
    PlanStep,
    RequestInfo,
    Verdict,
)
from guards.config import GuardSettings
from guards.stages import Check, GuardStage, StageResult
from tools.spans import thread_of

__all__ = ["INTAKE", "MAX_BYTES", "check_message", "make_intake_guard", "stub"]

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


def stub(text: str, message_id: str | None) -> HumanMessage:
    """A short stand-in, under the same id, for a message the intake guard does not keep."""
    return HumanMessage(content=text, id=message_id, additional_kwargs={STUB_MARK: True})


def _origin_of(thread_id: str | None) -> str:
    """A conversation's origin: a digest of the thread it began in (copies keep it as it is)."""
    return f"o_{hashlib.sha256((thread_id or '').encode()).hexdigest()[:24]}"


def _moment(text: str | None) -> datetime | None:
    try:
        return parse_iso(text) if text else None
    except (TypeError, ValueError):
        return None


def _last_human(messages: list[AnyMessage]) -> HumanMessage | None:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message
    return None


def _id_of(message: HumanMessage | None) -> str:
    # LangGraph's message reducer gives every message an id when the input is written.
    return str(message.id) if message is not None and message.id else ""


def _new_messages(state: InterlockState) -> list[AnyMessage]:
    """The messages this run's input added (everything after the graph's last word)."""
    messages = state.get("messages", [])
    seen = state.get("transcript_len")
    if seen is None and not state.get("request"):
        seen = 0  # a new conversation: everything is this run's input
    if seen is None:  # a thread from before the count was kept: after the last answer
        seen = max((i + 1 for i, m in enumerate(messages) if not isinstance(m, HumanMessage)),
                   default=0)
    return list(messages[seen:])


def _size(message: AnyMessage) -> int:
    content = message.content
    text = content if isinstance(content, str) else repr(content)
    return len(text.encode("utf-8", "replace"))


def _input_problem(new: list[AnyMessage], settings: GuardSettings) -> str | None:
    """Why the input as a whole is refused (several messages, foreign roles, size)."""
    if len(new) > settings.max_input_messages:
        return (f"A request may carry at most {settings.max_input_messages} messages; this one "
                f"carried {len(new):,}.")
    foreign = [m for m in new if not isinstance(m, HumanMessage)]
    if foreign:
        return (f"Only your own messages are accepted: a message with the role "
                f"'{foreign[0].type}' was sent, and only the support desk speaks for the desk.")
    total = sum(_size(m) for m in new)
    if total > settings.max_input_bytes:
        return (f"The request's messages come to {total:,} bytes; the limit is "
                f"{settings.max_input_bytes:,} bytes.")
    return None


def _unfinished(state: InterlockState, side_effects: Collection[str]) -> list[PlanStep]:
    """Side-effect steps of the last request that were sent out and never reported back.

    A new message does not replace them: LangGraph would drop a pending approval, or the
    record of a payment under way, for good.
    """
    plan = state.get("plan")
    if not plan or state.get("status") != "running":
        return []
    dispatched = set(state.get("dispatched", []))
    results = state.get("results", {})
    return [s for s in plan["steps"] if s["worker"] in side_effects
            and s["id"] in dispatched and s["id"] not in results]


def _already_handled(previous: RequestInfo, message: HumanMessage, now: datetime,
                     seen: int) -> StageResult:
    """A message sent again (a client retrying its POST): answer as before, run nothing.

    The messages channel keeps the first copy of a message id, so the record keeps what was
    acted on.
    """
    verdict = Verdict(guard=GUARD, passed=True, action="skip",
                      reasons=[f"duplicate: message {message.id} was handled in turn "
                               f"{previous['turn']}; nothing was run again"],
                      fact_ids=[], step_id=None, turn=previous["turn"], at=iso(now))
    return StageResult(verdicts=[verdict], update={"transcript_len": seen})


def _resume_unfinished(state: InterlockState, steps: list[PlanStep], new: list[AnyMessage],
                       settings: GuardSettings, now: datetime) -> StageResult:
    """Refuse a new message while a side effect of the last request is unfinished.

    The unfinished step is sent out again, so its approval (or the payment under way) is back
    where it was: the same proposal, under the same digest.
    """
    previous = state["request"]
    waiting = ", ".join(f"{s['worker']} for order {s['order_id']}" for s in steps)
    text = (f"Your earlier request is not finished yet ({waiting}: it waits for support "
            f"staff or is being completed). Send a new request once it is done.")
    verdict = Verdict(guard=GUARD, passed=False, action="refuse",
                      reasons=[f"busy: turn {previous['turn']} has unfinished side effects "
                               f"({', '.join(s['id'] for s in steps)}); the new message was not "
                               f"taken"], fact_ids=[], step_id=None, turn=previous["turn"],
                      at=iso(now))
    request = RequestInfo(**{**previous, "deadline_at": iso(
        now + timedelta(seconds=settings.deadline_s))})
    facts = state.get("facts", {})
    results = state.get("results", {})
    sends = [Send(s["worker"], {"step": s, "request": request,
                                "facts": dependency_facts(s, results, facts)}) for s in steps]
    stubs: list[AnyMessage] = [stub("[not taken: an earlier request was still unfinished]",
                                    m.id) for m in new]
    return StageResult(verdicts=[verdict], sends=sends, update={
        "messages": [*stubs, AIMessage(content=text, name="interlock")],
        "transcript_len": len(state.get("messages", [])) + 1})


def make_intake_guard(settings: GuardSettings, clock: Clock,
                      side_effects: Collection[str] = ()) -> Check:
    """The intake guard's check (`side_effects`: workers whose steps change the world)."""

    async def intake_guard(state: InterlockState, runtime: Runtime[InterlockContext]
                           ) -> StageResult:
        previous = state.get("request")
        turn = (previous["turn"] + 1) if previous else 1
        now = clock.now()
        actor: Actor = resolve_actor(runtime)
        context = runtime.context
        # A run's context may bring its deadline (a resumed run's fresh one), never a later one
        # than a request gets: work per request stays bounded whoever sends the context.
        latest = now + timedelta(seconds=settings.deadline_s)
        given = context.deadline_at if context is not None else None
        deadline = iso(min(_moment(given) or latest, latest))
        messages = state.get("messages", [])
        new = _new_messages(state)
        message = _last_human(new) or _last_human(messages)
        reset: dict[str, Any] = {
            "plan": None, "candidate_plan": None, "planner_fallback": None, "dispatched": [],
            "refreshed": [], "hops": 0,
            "inbox": Overwrite([]), "degraded": [], "status": "running", "error": None,
        }
        owner = state.get("owner") or server_owner() or actor
        origin = state.get("origin") or _origin_of(thread_of(runtime))
        try:
            if not may_act_for(actor, owner):
                # A thread belongs to whoever started it; another customer learns nothing.
                raise InputError("This conversation was not found.", field="thread")
            if previous and not new and message is not None and (
                    message.id == previous.get("message_id")):
                return _already_handled(previous, message, now, len(messages))
            if problem := _input_problem(new, settings):
                raise InputError(problem, field="messages")
            if message is None or not new:
                raise InputError("No user message was given.")
            if steps := _unfinished(state, side_effects):
                return _resume_unfinished(state, steps, new, settings, now)
            text = check_message(message.content)
        except InputError as exc:
            refused = Verdict(guard=GUARD, passed=False, action="refuse",
                              reasons=[f"{exc.field}: {exc.message}"], fact_ids=[],
                              step_id=None, turn=turn, at=iso(now))
            update: dict[str, Any] = {
                **reset, "status": "refused", "error": ErrorInfo(code=exc.code,
                                                                 message=exc.message)}
            # What was refused is not kept: later checkpoints carry a short stub instead.
            update["messages"] = [stub(f"[rejected by the intake guard: {exc.message}]"
                                       if m is message else "[rejected by the intake guard]",
                                       m.id) for m in new]
            update["transcript_len"] = len(messages)
            update["request"] = RequestInfo(turn=turn, message_id=_id_of(message), text="",
                                            received_at=iso(now), deadline_at=deadline,
                                            actor=actor, viewer=viewer_for(actor, owner),
                                            origin=origin)
            return StageResult(verdicts=[refused], update=update)
        assert message is not None
        request = RequestInfo(turn=turn, message_id=_id_of(message), text=text,
                              received_at=iso(now), deadline_at=deadline, actor=actor,
                              viewer=viewer_for(actor, owner), origin=origin)
        reasons = [f"actor: {request['actor']['kind']}"]
        if request["viewer"] != actor:
            reasons.append(f"viewer: customer {owner['customer_id']} (their conversation: "
                           f"what is looked up here is what they may see)")
        verdict = Verdict(guard=GUARD, passed=True, action="allow", reasons=reasons,
                          fact_ids=[], step_id=None, turn=turn, at=iso(now))
        extra: dict[str, Any] = {}
        if len(new) > 1:  # only the last message is the request; the others are not kept
            extra["messages"] = [stub("[not taken: only a request's last message is read]",
                                      m.id) for m in new if m is not message]
        return StageResult(verdicts=[verdict], update={
            **reset, **extra, "request": request, "owner": owner, "origin": origin,
            "transcript_len": len(messages)})

    return intake_guard


INTAKE = GuardStage(name="intake", at="request", build=lambda deps: make_intake_guard(
    deps.settings, deps.clock, deps.side_effects))
"""The first stage of every request: size, type, language, who is asking, whose thread."""
