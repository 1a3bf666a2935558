"""What a run request may carry: checks shared by the server's edge and its auth handlers.

Pure functions over the request as sent (no I/O): each returns None, or a sentence saying what
is refused. Only the user speaks in a request's messages; a customer sets no internal run
options (static interrupts, checkpoints, durability, webhooks, internal config keys); and an
approval answer names the proposal it answers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from graphs.core.answers import money
from graphs.settings import Settings

__all__ = ["CUSTOMER_RUN_FIELDS", "command_problem", "customer_run_problem", "input_problem",
           "internal_keys", "resume_problem", "waiting_summary"]

_ROLES = frozenset({"user", "human"})


def waiting_summary(value: Mapping[str, Any]) -> str:
    """What an approval waits on, in the words it shows a reviewer ("Refund $24.00 on order 1027").

    One the previous version left has no summary and is described from its fields.
    """
    if summary := value.get("summary"):
        return str(summary)
    cents = value.get("amount_cents")
    return (f"Refund {money(cents if isinstance(cents, int) else 0, value.get('currency'))} on "
            f"order {value.get('order_id')}")


def command_problem(command: Any) -> str:
    """Why a customer may not send `command` (only staff answer approvals or send commands)."""
    return ("only support staff may answer a refund approval"
            if isinstance(command, Mapping) and command.get("resume") is not None
            else "customers may send messages only, not commands")
_MESSAGE_FIELDS = frozenset({"role", "type", "content", "id", "name"})
CUSTOMER_RUN_FIELDS = frozenset({
    "assistant_id", "input", "metadata", "config", "stream_mode",
    "stream_subgraphs", "stream_resumable", "on_disconnect", "if_not_exists",
    "multitask_strategy", "after_seconds", "on_completion", "feedback_keys"})
"""What a customer's run request may set; anything else is for staff (or for nobody)."""
_INTERNAL = re.compile(r"^(?:__|langgraph_|checkpoint|thread_id$|run_id$|assistant_id$|user_id$)")
_STAFF_INTERNAL = re.compile(r"^(?:__|langgraph_auth_|langgraph_request_id$)")
_INTERRUPT_ID = re.compile(r"^[0-9a-f]{32}$")


def _text_bytes(content: Any) -> int | None:
    """UTF-8 size of a message's text, or None when it is not text."""
    if isinstance(content, str):
        return len(content.encode("utf-8", "replace"))
    if isinstance(content, list) and all(
            isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
            for p in content):
        return sum(len(p["text"].encode("utf-8", "replace")) for p in content)
    return None


def input_problem(value: Any, settings: Settings) -> str | None:
    """What is wrong with a run's `input` (None: it may be sent to the graph)."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) - {"messages"}:
        return "the input takes `messages` only"
    messages = value.get("messages")
    if not isinstance(messages, list):
        return "`messages` must be a list of messages"
    if len(messages) > settings.max_input_messages:
        return (f"a request may carry at most {settings.max_input_messages} messages; this one "
                f"carries {len(messages):,}")
    total = 0
    for n, message in enumerate(messages):
        if not isinstance(message, Mapping):
            return f"message {n} must be an object with a role and text content"
        if extra := sorted(set(message) - _MESSAGE_FIELDS):
            return f"message {n} has fields the desk does not take: {', '.join(extra[:5])}"
        roles = {str(message[k]) for k in ("role", "type") if k in message}
        if not roles or not roles <= _ROLES:
            shown = ", ".join(sorted(roles)) or "none"
            return (f"message {n} has the role {shown!s:.40}: only the user's own messages are "
                    f"accepted; only the support desk speaks for the desk")
        size = _text_bytes(message.get("content"))
        if size is None:
            return f"message {n}: only text messages are supported"
        total += size
        if "id" in message and not (isinstance(message["id"], str) and
                                    0 < len(message["id"]) <= 128):
            return f"message {n}: an id is a string of at most 128 characters"
    if total > settings.max_input_bytes:
        return (f"the request's messages come to {total:,} bytes; the limit is "
                f"{settings.max_input_bytes:,} bytes")
    return None


def internal_keys(mapping: Any, *, staff: bool = False) -> list[str]:
    """Keys of a run's `config.configurable` or `context` that only the server may set."""
    if not isinstance(mapping, Mapping):
        return []
    pattern = _STAFF_INTERNAL if staff else _INTERNAL
    return sorted(str(k) for k in mapping if pattern.match(str(k)))


def customer_run_problem(payload: Mapping[str, Any]) -> str | None:
    """What a customer's run request sets that only staff (or the server) may set."""
    if extra := sorted(set(payload) - CUSTOMER_RUN_FIELDS):
        return (f"customers may not set {', '.join(extra[:5])} on a run (commands, static "
                f"interrupts, checkpoints, durability, deadlines, context and webhooks are for "
                f"support staff)")
    if payload.get("multitask_strategy") not in (None, "reject", "enqueue"):
        return "customers may not interrupt or roll back a run in flight"
    config = payload.get("config")
    if config is not None and not isinstance(config, Mapping):
        return "`config` must be an object"
    if config and (set(config) - {"configurable", "tags", "metadata", "recursion_limit"}):
        return "customers may set only configurable, tags, metadata and recursion_limit"
    if config and config.get("recursion_limit") is not None:
        return "customers may not change the recursion limit"
    found = internal_keys((config or {}).get("configurable"))
    if found:
        return f"internal run settings may not be set: {', '.join(found[:5])}"
    return None


def resume_problem(resume: Any, pending: Sequence[Mapping[str, Any]]) -> str | None:
    """Whether an approval answer names what waits (`pending`: the thread's interrupts).

    An answer is `{"approved": bool, "note": str, "digest": <the proposal's digest>}`, sent
    alone when one approval waits, or keyed by interrupt id.
    """
    waiting = {str(i.get("id")): i.get("value") for i in pending}
    if not waiting:
        return "nothing on this thread awaits approval; nothing was approved"

    def problem(answer: Any, value: Any) -> str | None:
        digest = value.get("digest") if isinstance(value, Mapping) else None
        if not isinstance(answer, Mapping) or not isinstance(answer.get("approved"), bool):
            return 'an answer is {"approved": true|false, "note": "...", "digest": "..."}'
        if not answer.get("digest"):
            return (f"an answer must name the proposal it answers: add "
                    f"\"digest\": \"{digest}\" (from the thread's interrupts)")
        if answer.get("digest") != digest:
            what = waiting_summary(value if isinstance(value, Mapping) else {})
            return (f"the answer names proposal {str(answer.get('digest'))[:19]}…, which is no "
                    f"longer pending; what waits is {what}, digest {digest}: read it before "
                    f"you answer")
        return None

    if isinstance(resume, Mapping) and resume and all(
            isinstance(k, str) and _INTERRUPT_ID.match(k) for k in resume):
        for interrupt_id, answer in resume.items():
            if interrupt_id not in waiting:
                return (f"interrupt {interrupt_id} is not pending on this thread (pending: "
                        f"{', '.join(waiting)}); nothing was approved")
            if why := problem(answer, waiting[interrupt_id]):
                return why
        return None
    if len(waiting) > 1:
        return "several approvals wait: key each answer by its interrupt id"
    return problem(resume, next(iter(waiting.values())))
