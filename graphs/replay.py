"""Replay (a determinism check) and fork (a what-if branch) of a recorded thread.

`replay` copies the thread up to a step into a scratch in-memory checkpointer, rebuilds the
graph on a toolbox that answers every store read and dependency call from the thread's recorded
results (it calls nothing), drives it through the same requests and human decisions on a clock
set to each recorded moment, and compares every step after the starting point with the recorded
one, as Temporal's replayer does. `fork` copies the thread up to a step into a new thread of the
same checkpointer, leaving the original untouched.
"""

from __future__ import annotations

import uuid
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command, StateSnapshot

from checkpoints.fork import copy_thread
from checkpoints.lineage import snapshots
from graphs.core.clock import FakeClock, parse_iso
from graphs.core.errors import InputError
from graphs.core.state import STAFF, InterlockContext
from graphs.runner import Interlock, RunResult
from graphs.supervisor import build_graph
from tools.recording import RecordedResults
from tools.replay import replay_toolbox

__all__ = ["fork", "normalize", "replay"]

_VOLATILE = {"at", "as_of", "received_at", "deadline_at", "created_at", "decided_at",
             "requested_at", "made_at", "expires_at", "ms", "id"}
_COMPARED = ("messages", "plan", "candidate_plan", "planner_fallback", "dispatched",
             "refreshed", "hops", "inbox", "results", "facts", "verdicts", "degraded",
             "draft_answer", "status", "error", "subject")
_NEW_TURN = {"__start__", "intake_guard"}


def normalize(value: Any) -> Any:
    """A write without what may legitimately differ between two runs: times and ids."""
    if isinstance(value, BaseMessage):
        return {"type": value.type, "content": value.content, "name": value.name}
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def _steps_after(snaps: list[StateSnapshot], start: int) -> list[dict[str, Any]]:
    """For each step after `start`: the nodes that ran and what they wrote (normalized)."""
    rows = []
    for previous, snap in zip(snaps, snaps[1:], strict=False):
        step = int((snap.metadata or {}).get("step", -1))
        if step <= start:
            continue
        writes = {}
        for task in previous.tasks:
            result = task.result if isinstance(task.result, dict) else {}
            writes[task.name] = {k: normalize(v) for k, v in result.items() if k in _COMPARED}
        rows.append({"step": step, "nodes": sorted(t.name for t in previous.tasks),
                     "writes": writes})
    return rows


def _first_difference(recorded: list[dict[str, Any]], replayed: list[dict[str, Any]]
                      ) -> dict[str, Any] | None:
    for old, new in zip(recorded, replayed, strict=False):
        if old["nodes"] != new["nodes"]:
            return {"step": old["step"], "what": "different nodes ran",
                    "recorded": old["nodes"], "replayed": new["nodes"]}
        for node, writes in old["writes"].items():
            other = new["writes"].get(node, {})
            keys = sorted(k for k in set(writes) | set(other) if writes.get(k) != other.get(k))
            if keys:
                return {"step": old["step"], "node": node, "what": "different writes",
                        "keys": keys, "recorded": {k: writes.get(k) for k in keys},
                        "replayed": {k: other.get(k) for k in keys}}
    if len(recorded) != len(replayed):
        shorter = min(len(recorded), len(replayed))
        longer = recorded if len(recorded) > len(replayed) else replayed
        return {"step": longer[shorter]["step"], "what": "the runs have different lengths",
                "recorded": len(recorded), "replayed": len(replayed)}
    return None


def _inputs(original: list[StateSnapshot]) -> list[list[Any]]:
    """The messages each request arrived with, as recorded in its input checkpoint."""
    inputs = []
    for snap in original:
        if (snap.metadata or {}).get("source") == "input":
            writes = [t.result for t in snap.tasks if isinstance(t.result, dict)]
            inputs.append([m for w in writes for m in w.get("messages", [])])
    return inputs


def _requests(original: list[StateSnapshot]) -> dict[int, dict[str, Any]]:
    requests: dict[int, dict[str, Any]] = {}
    for snap in original:
        request = (snap.values or {}).get("request")
        if request:
            requests.setdefault(int(request["turn"]), request)
    return requests


async def replay(app: Interlock, thread_id: str, *, from_step: int | None = None,
                 results: RecordedResults | None = None) -> dict[str, Any]:
    """Re-execute a thread from a step on recorded results; report where it first differs."""
    original = await snapshots(app.graph, thread_id)
    final: dict[str, Any] = original[-1].values or {}
    steps = [int((s.metadata or {}).get("step", -1)) for s in original]
    start = steps[0] if from_step is None else from_step
    if start not in steps:
        raise InputError(f"No step {start} in this thread (steps {steps[0]} to {steps[-1]}).",
                         field="step")
    recorded = results or RecordedResults(final.get("events") or [])
    requests = _requests(original)
    inputs = _inputs(original)
    saver = app.graph.checkpointer
    assert isinstance(saver, BaseCheckpointSaver)
    scratch = InMemorySaver()
    at = steps.index(start)
    if (original[at].metadata or {}).get("source") == "input":
        # Start before the input: the replay receives the request as the recorded run did.
        if at > 0:
            await copy_thread(saver, thread_id, scratch, thread_id, upto_step=steps[at - 1])
    else:
        await copy_thread(saver, thread_id, scratch, thread_id, upto_step=start)
    clock = FakeClock(parse_iso(str(original[0].created_at)))
    toolbox, refused = replay_toolbox(app.settings, recorded, clock)
    graph = build_graph(checkpointer=scratch, settings=app.settings, toolbox=toolbox,
                        workers=app.workers, guards=app.guards)
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}, "recursion_limit": 100}

    def context(turn: int) -> InterlockContext:
        request = requests.get(turn)
        if request is None:
            return InterlockContext(actor=STAFF)
        clock.set(parse_iso(request["received_at"]))
        return InterlockContext(actor=request["actor"], deadline_at=request["deadline_at"])

    for _ in range(len(original) + 10):  # every pass moves the run on; bounded regardless
        snap = await graph.aget_state(config)
        turn = int(((snap.values or {}).get("request") or {}).get("turn", 0))
        if snap.interrupts:
            value = snap.interrupts[0].value
            step_id = value.get("step_id") if isinstance(value, dict) else None
            queue = recorded.decisions.get(step_id or "")
            if not queue:
                break
            decision = queue.popleft()
            context(turn)
            await graph.ainvoke(Command(resume=decision["answer"]), config,
                                context=InterlockContext(actor=decision.get("approver")
                                                         or STAFF),
                                durability="sync")
        elif snap.next:
            starting = bool(_NEW_TURN & set(snap.next))
            await graph.ainvoke(None, config, context=context(turn + 1 if starting else turn),
                                durability="sync")
        elif turn < len(inputs):
            await graph.ainvoke({"messages": inputs[turn]}, config,
                                context=context(turn + 1), durability="sync")
        else:
            break
    replayed = [s async for s in graph.aget_state_history(config)]
    replayed.reverse()
    recorded_rows = _steps_after(original, start)
    difference = _first_difference(recorded_rows, _steps_after(replayed, start))
    return {"thread_id": thread_id, "from_step": start, "steps_compared": len(recorded_rows),
            "reproduced": difference is None, "first_difference": difference,
            "results_served": recorded.served,
            # Counted where calls would go out: the recording seam serves without calling,
            # and the governor and the transport refused (and counted) every call that went
            # around it.
            "dependencies_called": refused.calls}


async def fork(app: Interlock, thread_id: str, *, from_step: int,
               message: str | None = None) -> tuple[str, RunResult | None]:
    """A new thread with the original's state at `from_step`; the original stays untouched.

    With `message`, the new thread goes on with that request (a what-if); without, it waits
    where the original was at that step (`interlock resume` continues it).
    """
    saver = app.graph.checkpointer
    assert isinstance(saver, BaseCheckpointSaver)
    new_thread = f"{thread_id}-fork-{uuid.uuid4().hex[:6]}"
    last = await copy_thread(saver, thread_id, saver, new_thread, upto_step=from_step)
    if message is None:
        return new_thread, None
    values = last.checkpoint["channel_values"]  # `request` and `owner` are plain channels
    actor = (values.get("request") or {}).get("actor") or values.get("owner") or STAFF
    return new_thread, await app.run(message, thread_id=new_thread, actor=actor)
