"""Lineage over any LangGraph checkpointer: history, "as of", diff and explain, as plain data.

Every function takes a compiled graph (with its checkpointer) and a thread id and returns
JSON-ready dicts and lists, so a notebook can call it as readily as the CLI. Step numbers are
LangGraph's checkpoint steps: checkpoint N holds the state after the nodes of step N ran
(-1 is the input as received).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from datetime import datetime
from typing import Any, cast

from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from langgraph.pregel import Pregel
from langgraph.types import StateSnapshot

from graphs.core.errors import InputError, NotFoundError

__all__ = ["asof", "diff", "explain", "history", "snapshots"]

_LISTS = ("messages", "verdicts", "events")
_MAPS = ("facts", "results")


async def snapshots(graph: Pregel[Any, Any, Any, Any], thread_id: str) -> list[StateSnapshot]:
    """Every checkpoint of the thread's main graph, oldest first (NotFoundError if none)."""
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    found = [snap async for snap in graph.aget_state_history(config)]
    if not found:
        raise NotFoundError(f"Thread {thread_id!r} was not found.", field="thread")
    found.reverse()
    return found


def _step(snap: StateSnapshot) -> int:
    return int((snap.metadata or {}).get("step", -1))


def _id(snap: StateSnapshot) -> str:
    return str(snap.config["configurable"].get("checkpoint_id", ""))


def _plain(value: Any) -> Any:
    """Messages as {type, content, id, name}; everything else as is (state is plain data)."""
    if isinstance(value, BaseMessage):
        return {"type": value.type, "content": value.content, "id": value.id,
                "name": value.name}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


async def history(graph: Pregel[Any, Any, Any, Any], thread_id: str) -> list[dict[str, Any]]:
    """Every step: checkpoint, time, the nodes that ran, what each wrote, and guard verdicts."""
    snaps = await snapshots(graph, thread_id)
    rows: list[dict[str, Any]] = []
    previous: StateSnapshot | None = None
    for snap in snaps:
        tasks = previous.tasks if previous is not None else ()
        writes: dict[str, list[str]] = {}
        verdicts: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        spans: list[dict[str, Any]] = []
        for task in tasks:
            result = task.result if isinstance(task.result, dict) else {}
            writes[task.name] = sorted(set(writes.get(task.name, [])) | set(result))
            verdicts.extend(result.get("verdicts") or [])
            events.extend(result.get("events") or [])
            spans.extend(result.get("spans") or [])
        rows.append({
            "step": _step(snap), "checkpoint_id": _id(snap), "created_at": snap.created_at,
            "source": (snap.metadata or {}).get("source"),
            "nodes": [t.name for t in tasks] or (["input"] if previous is None else []),
            "writes": writes, "verdicts": verdicts, "events": events, "spans": spans,
            "next": list(snap.next),
            "interrupts": [i.value for t in snap.tasks for i in t.interrupts],
        })
        previous = snap
    return rows


def _select(snaps: list[StateSnapshot], *, at: datetime | None, step: int | None
            ) -> StateSnapshot:
    if (at is None) == (step is None):
        raise InputError("Give exactly one of --at or --step.", field="asof")
    if step is not None:
        for snap in snaps:
            if _step(snap) == step:
                return snap
        steps = [_step(s) for s in snaps]
        raise InputError(f"No step {step} in this thread (steps {min(steps)} to {max(steps)}).",
                         field="step")
    assert at is not None
    if at.tzinfo is None:
        raise InputError("--at needs a time zone, e.g. 2026-11-25T14:00:00Z.", field="at")
    chosen = None
    for snap in snaps:
        created = datetime.fromisoformat(str(snap.created_at))
        if created <= at:
            chosen = snap
    if chosen is None:
        raise InputError(f"The thread did not exist yet at {at.isoformat()}.", field="at")
    return chosen


_PAGE = 16
"""Checkpoints read at a time while looking for the one in force at a moment."""


async def _locate(graph: Pregel[Any, Any, Any, Any], thread_id: str, *,
                  at: datetime | None, step: int | None) -> StateSnapshot:
    """The checkpoint of a step, or the latest one at a moment, without reading them all.

    Uses only the checkpointer interface (`alist` with a metadata filter, newest first), so it
    works on any LangGraph checkpointer; then reads that one snapshot.
    """
    if (at is None) == (step is None):
        raise InputError("Give exactly one of --at or --step.", field="asof")
    if at is not None and at.tzinfo is None:
        raise InputError("--at needs a time zone, e.g. 2026-11-25T14:00:00Z.", field="at")
    saver = graph.checkpointer
    if not isinstance(saver, BaseCheckpointSaver):
        return _select(await snapshots(graph, thread_id), at=at, step=step)
    base: RunnableConfig = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    found: RunnableConfig | None = None
    seen = False
    # Checkpoint ids are time-ordered (uuid6): start the newest-first scan just after `at`,
    # so the first row is normally the answer instead of the end of a long scan.
    before: RunnableConfig | None = (
        {"configurable": {"checkpoint_id": _checkpoint_id_after(at)}} if at is not None
        else None)
    # In pages: a saver may read its whole answer before yielding the first row (Postgres's
    # does, every channel's blobs included), so an unbounded scan costs the thread's length.
    page = 1 if step is not None else _PAGE
    while found is None:
        listing = cast("AsyncGenerator[CheckpointTuple, None]", saver.alist(
            base, filter={"step": step} if step is not None else None, before=before,
            limit=page))
        last: CheckpointTuple | None = None
        async with aclosing(listing) as rows:
            async for row in rows:
                seen, last = True, row
                if at is None or datetime.fromisoformat(row.checkpoint["ts"]) <= at:
                    found = row.config
                    break
        if found is not None or last is None or step is not None:
            break
        before = {"configurable": {"checkpoint_id": last.config["configurable"][
            "checkpoint_id"]}}
    if found is None:
        if not seen and step is None:
            await snapshots(graph, thread_id)  # NotFoundError if the thread does not exist
        if step is not None:
            return _select(await snapshots(graph, thread_id), at=None, step=step)  # explains
        raise InputError(f"The thread did not exist yet at {at.isoformat() if at else ''}.",
                         field="at")
    return await graph.aget_state(found)


def _checkpoint_id_after(moment: datetime) -> str:
    """A uuid6 checkpoint id greater than that of any checkpoint made at or before `moment`."""
    # 10 ms of slack: an id and its checkpoint's `ts` are taken microseconds apart; the scan
    # that follows checks `ts` itself, so slack only costs a few extra rows.
    ticks = int(moment.timestamp() * 10_000_000) + 0x01B21DD213814000 + 100_000
    value = ((ticks >> 12) & 0xFFFFFFFFFFFF) << 80 | (ticks & 0x0FFF) << 64
    return str(uuid.UUID(int=value | (0x6 << 76)))


async def asof(graph: Pregel[Any, Any, Any, Any], thread_id: str, *,
               at: datetime | None = None, step: int | None = None) -> dict[str, Any]:
    """What was known at a moment (or step): facts in force, plan, pending approvals, verdicts."""
    snap = await _locate(graph, thread_id, at=at, step=step)
    values: dict[str, Any] = snap.values or {}
    facts = values.get("facts") or {}
    return {
        "thread_id": thread_id, "step": _step(snap), "checkpoint_id": _id(snap),
        "created_at": snap.created_at, "status": values.get("status"),
        "request": _plain(values.get("request")),
        "facts": {fid: {k: f[k] for k in ("kind", "subject", "value", "source", "version",
                                          "as_of", "worker", "worker_version", "step_id")}
                  | {"scope": f.get("scope")}
                  for fid, f in sorted(facts.items())},
        "plan": values.get("plan"),
        "results": values.get("results") or {},
        "pending_approvals": [i.value for t in snap.tasks for i in t.interrupts],
        "verdicts": values.get("verdicts") or [],
        "degraded": values.get("degraded") or [],
        "next": list(snap.next),
    }


def _diff_values(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if key in _MAPS and isinstance(old or {}, dict) and isinstance(new or {}, dict):
            old, new = old or {}, new or {}
            changes[key] = {
                "added": {k: new[k] for k in sorted(set(new) - set(old))},
                "removed": sorted(set(old) - set(new)),
                "changed": {k: {"before": old[k], "after": new[k]}
                            for k in sorted(set(old) & set(new)) if old[k] != new[k]},
            }
        elif key in _LISTS and isinstance(old or [], list) and isinstance(new or [], list):
            old, new = old or [], new or []
            if new[:len(old)] == old:
                changes[key] = {"appended": _plain(new[len(old):])}
            else:
                changes[key] = {"before": _plain(old), "after": _plain(new)}
        else:
            changes[key] = {"before": _plain(old), "after": _plain(new)}
    return changes


async def diff(graph: Pregel[Any, Any, Any, Any], thread_id: str, a: int, b: int
               ) -> dict[str, Any]:
    """What changed in the state between step `a` and step `b`."""
    first = await _locate(graph, thread_id, at=None, step=a)
    second = await _locate(graph, thread_id, at=None, step=b)
    return {"thread_id": thread_id, "from": {"step": a, "checkpoint_id": _id(first)},
            "to": {"step": b, "checkpoint_id": _id(second)},
            "changes": _diff_values(first.values or {}, second.values or {})}


async def explain(graph: Pregel[Any, Any, Any, Any], thread_id: str, fact_id: str
                  ) -> dict[str, Any]:
    """Which step, worker and dependency calls produced a fact, and every decision that used it.

    Covers every version the fact had in the thread, oldest first.
    """
    snaps = await snapshots(graph, thread_id)
    versions: list[dict[str, Any]] = []
    last: Any = None
    for snap in snaps:
        fact = ((snap.values or {}).get("facts") or {}).get(fact_id)
        if fact is not None and fact != last:
            versions.append({"committed_at_step": _step(snap), "checkpoint_id": _id(snap),
                             "fact": fact})
        last = fact
    if not versions:
        raise NotFoundError(f"No fact {fact_id!r} in thread {thread_id!r}.", field="fact")
    final: dict[str, Any] = snaps[-1].values or {}
    plan_steps = {s["id"]: s for turn_plan in _plans(snaps) for s in turn_plan["steps"]}
    events = final.get("events") or []
    verdicts = final.get("verdicts") or []
    explained = []
    for version in versions:
        fact = version["fact"]
        step_id = fact["step_id"]
        explained.append({
            **version,
            "produced_by": {"step_id": step_id, "worker": fact["worker"],
                            "worker_version": fact["worker_version"],
                            "plan_step": plan_steps.get(step_id), "source": fact["source"],
                            "version": fact.get("version"), "as_of": fact["as_of"]},
            "dependency_calls": [e for e in events if e.get("step_id") == step_id
                                 and e.get("dependency") is not None],
        })
    used_by_steps = [s for s in plan_steps.values()
                     if any(v["fact"]["step_id"] in s["depends_on"] for v in versions)]
    return {
        "thread_id": thread_id, "fact_id": fact_id, "versions": explained,
        "used_by": {
            "verdicts": [v for v in verdicts if fact_id in v.get("fact_ids", [])],
            "steps": used_by_steps,
        },
    }


def _plans(snaps: list[StateSnapshot]) -> list[dict[str, Any]]:
    plans: list[dict[str, Any]] = []
    for snap in snaps:
        plan = (snap.values or {}).get("plan")
        if plan and (not plans or plans[-1] != plan):
            plans.append(plan)
    return plans
