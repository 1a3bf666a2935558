"""Per-step history of a thread, read from any LangGraph checkpointer as plain data."""

from __future__ import annotations

from typing import Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.pregel import Pregel

__all__ = ["HistoryStep", "history"]


class HistoryStep(TypedDict):
    """One checkpoint of a thread and what ran from it."""

    step: int
    """LangGraph's step number (-1 is the input)."""
    checkpoint_id: str
    """The checkpoint's id."""
    created_at: str | None
    """When the checkpoint was written."""
    source: str
    """input, loop, update or fork."""
    nodes: list[str]
    """Nodes that ran from this checkpoint (their results are in `writes`)."""
    writes: dict[str, list[str]]
    """For each node, the state keys it wrote."""
    verdicts: list[dict[str, Any]]
    """Guard verdicts written by those nodes."""
    interrupts: list[Any]
    """Interrupts raised from this checkpoint (pending approvals)."""


async def history(graph: Pregel[Any, Any, Any, Any], thread_id: str) -> list[HistoryStep]:
    """Every checkpoint of the thread's main graph, oldest first."""
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    steps: list[HistoryStep] = []
    async for snap in graph.aget_state_history(config):
        metadata = snap.metadata or {}
        writes: dict[str, list[str]] = {}
        verdicts: list[dict[str, Any]] = []
        for task in snap.tasks:
            result = task.result if isinstance(task.result, dict) else {}
            writes.setdefault(task.name, [])
            writes[task.name] = sorted(set(writes[task.name]) | set(result))
            verdicts.extend(result.get("verdicts") or [])
        steps.append(HistoryStep(
            step=int(metadata.get("step", -1)),
            checkpoint_id=str(snap.config["configurable"].get("checkpoint_id", "")),
            created_at=snap.created_at, source=str(metadata.get("source", "")),
            nodes=[t.name for t in snap.tasks], writes=writes, verdicts=verdicts,
            interrupts=[i.value for t in snap.tasks for i in t.interrupts]))
    steps.reverse()
    return steps
