"""Copy a thread's checkpoints, up to a step, into another thread (or another checkpointer).

Uses only the `BaseCheckpointSaver` interface (`alist`, `aput`, `aput_writes`), so it works on
any LangGraph checkpointer. Every ancestor is copied with its pending writes, which is what
delta channels replay on read; the last copied checkpoint goes without the writes of the tasks
that ran from it, so the copy resumes exactly there and those tasks run again.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple

from graphs.core.errors import InputError, NotFoundError

__all__ = ["copy_thread"]

INTERRUPT = "__interrupt__"
"""The channel LangGraph records an `interrupt()` in (its constant is private since 1.0)."""


async def copy_thread(source: BaseCheckpointSaver[Any], thread_id: str,
                      target: BaseCheckpointSaver[Any], new_thread_id: str, *,
                      upto_step: int) -> CheckpointTuple:
    """Copy `thread_id` into `new_thread_id` up to the main-graph checkpoint of `upto_step`.

    Returns the last copied main-graph checkpoint. What happened after it is left behind: the
    writes of the tasks that ran from it and any answer to an approval it was waiting for.
    What it was waiting for stays: a pending approval is still pending in the copy. (An input
    checkpoint keeps its writes: they are the input itself.)
    """
    rows = [row async for row in source.alist({"configurable": {"thread_id": thread_id}})]
    if not rows:
        raise NotFoundError(f"Thread {thread_id!r} was not found.", field="thread")
    main = [r for r in rows if not r.config["configurable"].get("checkpoint_ns")]
    matching = [r for r in main if r.metadata.get("step") == upto_step]
    if not matching:
        steps = [r.metadata.get("step", -1) for r in main]
        raise InputError(f"No step {upto_step} in this thread (steps {min(steps)} to "
                         f"{max(steps)}).", field="step")
    last = matching[0]
    last_id = str(last.config["configurable"]["checkpoint_id"])
    keep_all = last.metadata.get("source") == "input"
    keep = [r for r in rows if str(r.config["configurable"]["checkpoint_id"]) <= last_id]
    for row in sorted(keep, key=lambda r: str(r.config["configurable"]["checkpoint_id"])):
        is_last = str(row.config["configurable"]["checkpoint_id"]) == last_id
        await _put(target, row, new_thread_id,
                   only=None if keep_all or not is_last else {INTERRUPT})
    return last


async def _put(target: BaseCheckpointSaver[Any], row: CheckpointTuple, thread_id: str, *,
               only: set[str] | None) -> None:
    """Copy one checkpoint, with its pending writes (only those to channels in `only`)."""
    namespace = row.config["configurable"].get("checkpoint_ns", "")
    parent = (row.parent_config or {}).get("configurable", {}).get("checkpoint_id")
    config: RunnableConfig = {"configurable": {
        "thread_id": thread_id, "checkpoint_ns": namespace,
        **({"checkpoint_id": parent} if parent else {})}}
    saved = await target.aput(config, row.checkpoint, row.metadata,
                              dict(row.checkpoint.get("channel_versions", {})))
    by_task: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for task_id, channel, value in row.pending_writes or ():
        if only is None or channel in only:
            by_task[task_id].append((channel, value))
    for task_id, writes in by_task.items():
        await target.aput_writes(saved, writes, task_id)
