"""Run, resume and inspect requests: the one code path the CLI, the demo and notebooks share.

Usage: `async with open_interlock() as app: result = await app.run("Where is order 1042?")`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import Command, Interrupt, StateSnapshot

from agents.base import WorkerSpec
from checkpoints import lineage
from checkpoints.saver import open_saver
from graphs.admission import waiting_summary
from graphs.core.actors import is_staff, may_act_for
from graphs.core.clock import iso
from graphs.core.errors import InputError, NotFoundError
from graphs.core.state import STAFF, Actor, InterlockContext
from graphs.executor import pending_effects, side_effecting
from graphs.settings import Settings, settings_of
from graphs.supervisor import InterlockGraph, build_graph
from guards.stages import GuardStage
from tools.dependencies import Dependency
from tools.toolbox import Toolbox, build_toolbox

__all__ = ["Interlock", "RunResult", "open_interlock"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    """The outcome of one run or resume, as the CLI's `--json` prints it."""

    thread_id: str
    """The conversation."""
    status: str
    """completed, awaiting_approval, refused or failed."""
    answer: str
    """The answer (after the output guard), or what is awaited."""
    degraded: list[str]
    """Dependencies that could not be reached."""
    pending_approval: dict[str, Any] | None
    """The approval request, while one waits."""
    checkpoint_id: str | None
    """The latest checkpoint of the thread."""
    error: dict[str, str] | None = None
    """Why the request ended early (code, message), if it did."""
    plan: dict[str, Any] | None = field(default=None, repr=False)
    """The executed plan."""
    facts: dict[str, Any] = field(default_factory=dict, repr=False)
    """Facts in force after the run."""
    verdicts: list[dict[str, Any]] = field(default_factory=list, repr=False)
    """Verdicts of this request."""
    events: list[dict[str, Any]] = field(default_factory=list, repr=False)
    """Tool-layer events of this request (attempts, retries, breaker transitions)."""

    def to_json(self) -> dict[str, Any]:
        """The CLI contract's object (plus `error`)."""
        data = asdict(self)
        for key in ("plan", "facts", "verdicts", "events"):
            data.pop(key)
        return data

    @property
    def bad_input(self) -> bool:
        """Whether the request was refused as bad input."""
        return self.error is not None and self.error.get("code") in ("bad_input", "not_found")


def _config(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}, "recursion_limit": 100}


def summarize(thread_id: str, snap: StateSnapshot) -> RunResult:
    """A RunResult from a thread's latest state."""
    return _summary(thread_id, snap.values or {}, [i.value for i in snap.interrupts],
                    (snap.config or {}).get("configurable", {}).get("checkpoint_id"),
                    bool(snap.next))


def _summary(thread_id: str, values: dict[str, Any], pending: list[Any],
             checkpoint_id: str | None, unfinished: bool) -> RunResult:
    request = values.get("request") or {}
    turn = request.get("turn")
    verdicts = [v for v in values.get("verdicts", []) if v.get("turn") == turn]
    events = [e for e in values.get("events", [])
              if str(e.get("step_id") or "").startswith(f"t{turn}.")]
    common: dict[str, Any] = {"thread_id": thread_id,
                              "degraded": list(values.get("degraded") or []),
              "checkpoint_id": checkpoint_id, "plan": values.get("plan"),
              "facts": dict(values.get("facts") or {}), "verdicts": verdicts,
                              "events": events}
    if pending:
        approval = pending[0]
        answer = (f"{waiting_summary(approval)} waits for approval by support staff."
                  if isinstance(approval, dict) else "Waiting for approval.")
        return RunResult(status="awaiting_approval", answer=answer, pending_approval=approval,
                         **common)
    status = values.get("status") or "failed"
    answer = ""
    messages = values.get("messages") or []
    if messages and isinstance(messages[-1], AIMessage):
        answer = str(messages[-1].content)
    error = values.get("error")
    if unfinished or status == "running":
        status = "failed"
        error = {"code": "interrupted",
                 "message": f"The run stopped before it finished; `interlock resume "
                            f"{thread_id}` continues it from its last checkpoint."}
    return RunResult(status=status, answer=answer, pending_approval=None,
                     error=dict(error) if error else None, **common)


class Interlock:
    """A compiled graph with its checkpointer and toolbox, ready to run requests."""

    def __init__(self, graph: InterlockGraph, toolbox: Toolbox,
                 settings: Settings | None = None, *,
                 workers: Sequence[WorkerSpec] | None = None,
                 guards: Sequence[GuardStage] | None = None) -> None:
        self.graph = graph
        self.toolbox = toolbox
        self.settings = settings_of(settings, toolbox.settings)
        self.workers = workers
        """The workers the graph was built with (None: the defaults); a replay uses them."""
        self.guards = guards
        """The guard stages the graph was built with (None: the defaults)."""

    def _context(self, actor: Actor) -> InterlockContext:
        deadline = self.toolbox.clock.now() + timedelta(seconds=self.settings.deadline_s)
        return InterlockContext(actor=actor, deadline_at=iso(deadline))

    async def state(self, thread_id: str) -> StateSnapshot:
        """The thread's latest state snapshot."""
        return await self.graph.aget_state(_config(thread_id))

    async def result(self, thread_id: str) -> RunResult:
        """The thread's latest result; NotFoundError if the thread does not exist."""
        snap = await self.state(thread_id)
        if not snap.values:
            raise NotFoundError(f"Thread {thread_id!r} was not found.", field="thread")
        return summarize(thread_id, snap)

    async def run(self, message: str, *, thread_id: str | None = None,
                  actor: Actor = STAFF, message_id: str | None = None) -> RunResult:
        """Run one request (a new thread unless `thread_id` names an existing one).

        `message_id` makes a client's retry safe: a message already handled in the thread is
        answered as before and runs nothing again.
        """
        if thread_id is None:
            thread_id = f"t-{uuid.uuid4().hex[:12]}"
        elif (snap := await self.state(thread_id)).values:
            owner = snap.values.get("owner")
            if owner is not None and not may_act_for(actor, owner):
                raise NotFoundError(f"Thread {thread_id!r} was not found.", field="thread")
            if snap.interrupts:
                raise InputError(f"Thread {thread_id!r} is waiting for a refund approval; "
                                 f"resume it with --approve or --reject first.", field="thread")
        payload: Any = {"messages": [{"role": "user", "content": message,
                                      **({"id": message_id} if message_id else {})}]}
        return await self._invoke(thread_id, payload, actor)

    async def resume(self, thread_id: str, *, approve: bool | None = None, note: str = "",
                     actor: Actor = STAFF, digest: str | None = None) -> RunResult:
        """Answer a pending approval (`approve`), or continue (`approve=None`).

        An answer names what it approves: `digest` (from the pending approval's `digest`), or,
        when there is one pending approval and no digest is given, that one. Continuing means:
        a run that stopped before it finished goes on from its last checkpoint; a finished
        request that left a refund pending gets it settled.
        """
        snap = await self.state(thread_id)
        owner = snap.values.get("owner") if snap.values else None
        if not snap.values or (owner is not None and not may_act_for(actor, owner)):
            raise NotFoundError(f"Thread {thread_id!r} was not found.", field="thread")
        if approve is not None:
            if not snap.interrupts:
                raise InputError(f"Thread {thread_id!r} has nothing awaiting approval.",
                                 field="thread")
            if not is_staff(actor):
                raise InputError("Only support staff may answer a refund approval.",
                                 field="actor")
            answered = _answered(thread_id, list(snap.interrupts), digest)
            answers = {i.id: {"approved": approve, "note": note[:500], "digest": (
                i.value.get("digest", "") if isinstance(i.value, dict) else "")}
                for i in answered}
            # The digest binds the answer; by id only where several wait (a fork or copy of a
            # thread runs its waiting step again, under new interrupt ids).
            command: Any = Command(resume=(next(iter(answers.values()))
                                           if len(snap.interrupts) == 1 else answers))
        elif snap.interrupts:
            raise InputError(f"Thread {thread_id!r} waits for a refund approval; "
                             f"use --approve or --reject.", field="thread")
        elif (snap.next or (snap.metadata or {}).get("source") == "input"
              or snap.values.get("status") == "running"):
            # A run that stopped (a crash): continue from its last checkpoint. LangGraph shows
            # no next step when the tasks of the last step finished but their step was not
            # closed, or when only the input was recorded; the request's status tells.
            command = None
        elif pending_effects(snap.values, side_effecting(self.graph)):
            command = Command(goto="reconciler")  # settle refunds whose outcome was unknown
        else:
            return summarize(thread_id, snap)
        return await self._invoke(thread_id, command, actor)

    async def _invoke(self, thread_id: str, payload: Any, actor: Actor) -> RunResult:
        """Run the graph until it stops; summarize from its output, not a re-read state."""
        output = await self.graph.ainvoke(payload, _config(thread_id),
                                          context=self._context(actor), durability="sync",
                                          version="v2")
        saver = self.graph.checkpointer
        latest = (await saver.aget_tuple({"configurable": {"thread_id": thread_id,
                                                           "checkpoint_ns": ""}})
                  if isinstance(saver, BaseCheckpointSaver) else None)
        checkpoint_id = latest.config["configurable"].get("checkpoint_id") if latest else None
        return _summary(thread_id, dict(output.value), [i.value for i in output.interrupts],
                        checkpoint_id, unfinished=False)

    async def history(self, thread_id: str) -> list[dict[str, Any]]:
        """Every step of the thread, oldest first; NotFoundError if it does not exist."""
        return await lineage.history(self.graph, thread_id)

    async def asof(self, thread_id: str, *, at: datetime | None = None,
                   step: int | None = None) -> dict[str, Any]:
        """What was known at a moment or step (see `checkpoints.lineage.asof`)."""
        return await lineage.asof(self.graph, thread_id, at=at, step=step)

    async def diff(self, thread_id: str, a: int, b: int) -> dict[str, Any]:
        """What changed between two steps (see `checkpoints.lineage.diff`)."""
        return await lineage.diff(self.graph, thread_id, a, b)

    async def explain(self, thread_id: str, fact_id: str) -> dict[str, Any]:
        """Where a fact came from and what used it (see `checkpoints.lineage.explain`)."""
        return await lineage.explain(self.graph, thread_id, fact_id)


def _answered(thread_id: str, pending: list[Interrupt], digest: str | None
              ) -> list[Interrupt]:
    """The pending approvals an answer is for: the one `digest` names, or the only one."""
    if digest is None:
        if len(pending) > 1:
            raise InputError(f"Thread {thread_id!r} has {len(pending)} approvals waiting; name "
                             f"the one you answer with its digest.", field="digest")
        return pending
    chosen = [i for i in pending if isinstance(i.value, dict) and i.value.get("digest") == digest]
    if not chosen:
        shown = ", ".join(str(i.value.get("digest")) for i in pending if isinstance(i.value, dict))
        raise InputError(f"The approval {digest[:19]}… is no longer pending on thread "
                         f"{thread_id!r} (pending: {shown or 'none'}); nothing was approved.",
                         field="digest")
    return chosen


@asynccontextmanager
async def open_interlock(settings: Settings | None = None, *, toolbox: Toolbox | None = None,
                         workers: Sequence[WorkerSpec] | None = None,
                         guards: Sequence[GuardStage] | None = None,
                         dependencies: Sequence[Dependency] = ()
                         ) -> AsyncIterator[Interlock]:
    """Open the checkpointer (SQLite under INTERLOCK_HOME, or Postgres) and build the graph.

    `workers`, `guards` and `dependencies` are as for `build_graph` (a team's own).
    """
    settings = settings_of(settings, toolbox.settings if toolbox else None)
    if dependencies:
        settings = settings.with_dependencies(*dependencies)
    toolbox = toolbox or build_toolbox(settings)
    async with open_saver(database_url=settings.database_url,
                          path=settings.checkpoints_path,
                          synchronous=settings.sqlite_synchronous,
                          crash_after=settings.crash_after) as saver:
        try:
            yield Interlock(build_graph(checkpointer=saver, settings=settings, toolbox=toolbox,
                                        workers=workers, guards=guards), toolbox, settings,
                            workers=workers, guards=guards)
        finally:
            await toolbox.aclose()

