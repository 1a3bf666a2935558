"""Drafters: another agent words the answer; the output guard decides whether its words stand.

The responder composes the answer from this request's facts (a template). A drafter, if one is
configured (`DRAFTERS` in an extension module), words the statements of read-only workers for
the customer; the
output guard checks its text as a whole exactly as it checks the template's (grounding, personal
data, no claims the facts do not prove) and that it leaves out none of the values the
statements state. Text that fails any check is not used: the template's statements stand, and
the verdict says why. Our own notices (what could not be checked, questions back) are never
reworded: they follow the drafter's text as they are.

`remote_drafter(...)` reaches a drafting graph served elsewhere (a CrewAI crew in its own
environment) as a governed dependency: its own breaker, timeout, bulkhead and budget, what is
left of the request's deadline, an idempotency key. It sends `{"step", "request": {"text",
"turn"}, "template": {"statements", "notices"}, "idempotency_key"}` and reads `{"status": "done"
| "degraded", "text", "note"}`. The drafter sees no more than the customer will: the statements
it may word (already checked; not those of what was done, offered or advised, `Draft.fixed`,
which follow its text in our words), our notices, and the customer's words with personal data
taken out; not the facts themselves.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from langgraph.runtime import Runtime

from agents.remote import RemoteWorkerClient
from graphs.core.answers import wordable
from graphs.core.clock import parse_iso
from graphs.core.state import Draft, Event, InterlockContext, InterlockState, Wording
from tools.dependencies import Dependency
from tools.errors import DependencyError
from tools.governor import CallContext
from tools.policy import DependencyPolicy
from tools.spans import thread_of
from tools.toolbox import Toolbox

__all__ = ["Drafter", "DraftFn", "WordingFailed", "draft_context", "remote_drafter"]

_MAX_TEXT = 4000
"""Longer wording is outside the contract (the template's answers are a few lines)."""

DraftFn = Callable[[InterlockState, Draft, Runtime[InterlockContext], list[Event]],
                   Awaitable[Wording]]
"""`(state, draft, runtime, events)` -> the wording; raises `WordingFailed` (events: the
governor's, appended). The responder gives it the state with the request's text redacted."""


class WordingFailed(Exception):
    """The drafter gave no usable wording (`reason`: why, for the verdict)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class Drafter:
    """A drafter: its name (the verdicts name it) and how to build its call from the toolbox."""

    name: str
    description: str
    build: Callable[[Toolbox], DraftFn]


def draft_context(state: InterlockState, toolbox: Toolbox,
                  runtime: Runtime[InterlockContext]) -> CallContext:
    """The call context of a drafter's calls: step `t<turn>.draft`, to the request's deadline.

    A resumed run's own deadline (the run context's) stands in for the request's, if it has one.
    """
    request = state["request"]
    context = runtime.context
    deadline = context.deadline_at if context is not None and context.deadline_at \
        else request["deadline_at"]
    return CallContext.until(parse_iso(deadline), toolbox.clock,
                             step_id=f"t{request['turn']}.draft", thread_id=thread_of(runtime))


def remote_drafter(*, name: str, graph_id: str, description: str,
                   policy: DependencyPolicy | None = None) -> tuple[Dependency, Drafter]:
    """The dependency and the drafter for a drafting graph served elsewhere."""
    dependency = Dependency(
        name=name, description=f"Remote drafting graph {graph_id!r} ({description})",
        policy=policy or DependencyPolicy(timeout=20.0, attempts=1, fail_max=3),
        client=lambda wiring: RemoteWorkerClient(wiring, graph_id, {}),
        simulated_by_default=False)

    def build(toolbox: Toolbox) -> DraftFn:
        client: RemoteWorkerClient = toolbox.client(name)

        async def draft(state: InterlockState, template: Draft,
                        runtime: Runtime[InterlockContext], events: list[Event]) -> Wording:
            request = state["request"]
            ctx = draft_context(state, toolbox, runtime)
            payload: dict[str, Any] = {
                "step": {"id": ctx.step_id, "worker": name},
                "request": {"text": request["text"], "turn": request["turn"]},
                "template": {"statements": wordable(template),
                             "notices": list(template["notices"])}}
            origin = request.get("origin") or request["message_id"]
            asked = json.dumps(payload, sort_keys=True, default=str)
            key = payload["idempotency_key"] = "il-" + hashlib.sha256(
                f"{name}|{origin}|{asked}".encode()).hexdigest()[:40]
            try:
                values = await client.run(payload, ctx, idempotency_key=key)
            except DependencyError as exc:
                raise WordingFailed(f"{name} unavailable ({exc.reason})") from None
            finally:
                events.extend(ctx.events)
            text = values.get("text")
            if values.get("status") != "done" or not isinstance(text, str) or not text.strip():
                raise WordingFailed(f"{name} gave no wording ({values.get('status')!r})")
            if len(text) > _MAX_TEXT:
                raise WordingFailed(f"{name} answered outside its contract (too long)")
            return Wording(by=name, text=text.strip())

        return draft

    return dependency, Drafter(name=name, description=description, build=build)
