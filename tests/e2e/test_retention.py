"""Retention on both savers: idle threads go, long threads shrink, delta channels still read."""

from __future__ import annotations

import operator
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import pytest
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import START, StateGraph
from typing_extensions import TypedDict

from checkpoints.retention import PruneReport, prune, storage_report, vacuum
from checkpoints.saver import open_saver


def _fold(state: list[int], writes: list[list[int]]) -> list[int]:
    return [*state, *(n for batch in writes for n in batch)]


class Log(TypedDict, total=False):
    log: Annotated[list[int], DeltaChannel(_fold, snapshot_frequency=4)]
    notes: Annotated[list[int], DeltaChannel(_fold, snapshot_frequency=7)]
    late: Annotated[list[int], DeltaChannel(_fold, snapshot_frequency=3)]
    """Written only from turn 22 on: older checkpoints have no version of it."""
    total: Annotated[int, operator.add]
    last: int


async def step(state: Log) -> dict[str, Any]:
    n = len(state.get("log") or [])
    return {"log": [n], "notes": [n * 10], "total": 1, "last": n,
            **({"late": [n]} if n >= 22 else {})}


def graph(saver: BaseCheckpointSaver[Any]) -> Any:
    builder: StateGraph[Any, Any, Any, Any] = StateGraph(Log)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    return builder.compile(checkpointer=saver)


@pytest.fixture(params=["sqlite", "postgres"])
async def saver(request: pytest.FixtureRequest, tmp_path: Path
                ) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    async with open_saver(database_url=url, path=tmp_path / "checkpoints.db") as opened:
        yield opened


async def run_turns(app: Any, thread: str, turns: int) -> None:
    for _ in range(turns):
        await app.ainvoke({}, {"configurable": {"thread_id": thread}})


async def test_a_long_thread_keeps_its_newest_checkpoints_and_what_their_deltas_need(
        saver: BaseCheckpointSaver[Any]) -> None:
    app = graph(saver)
    await run_turns(app, "long", 10)
    before = (await app.aget_state({"configurable": {"thread_id": "long"}})).values
    assert before["log"] == list(range(10)) and before["total"] == 10
    untouched = await prune(saver, now=datetime.now(UTC), keep_last=2)  # no graph to read
    assert untouched.namespaces_skipped == 1 and untouched.checkpoints_deleted == 0
    report = await prune(saver, now=datetime.now(UTC), keep_last=2, graph=app)
    assert report.checkpoints_deleted > 0 and report.snapshots_written == 1, report
    after = (await app.aget_state({"configurable": {"thread_id": "long"}})).values
    assert after == before  # the delta channel replays from a snapshot that was kept
    history = [s async for s in app.aget_state_history({"configurable": {"thread_id": "long"}})]
    assert len(history) == report.checkpoints_kept < 2 * 10
    await run_turns(app, "long", 1)  # the thread goes on from what was kept
    assert (await app.aget_state({"configurable": {"thread_id": "long"}})).values["log"] == (
        list(range(11)))


async def test_every_kept_checkpoint_reads_as_before_whatever_its_channels_need(
        saver: BaseCheckpointSaver[Any]) -> None:
    # Two delta channels snapshot at different steps: each kept checkpoint needs its own
    # ancestors for each of them.
    app = graph(saver)
    await run_turns(app, "two", 23)
    config = {"configurable": {"thread_id": "two"}}
    before = {s.config["configurable"]["checkpoint_id"]: s.values
              async for s in app.aget_state_history(config)}
    for keep in (5, 3, 1):
        report = await prune(saver, now=datetime.now(UTC), keep_last=keep, graph=app)
        assert report.checkpoints_kept < len(before)
        kept = [s async for s in app.aget_state_history(config)]
        for snap in kept:
            assert snap.values == before[snap.config["configurable"]["checkpoint_id"]]


async def test_a_thread_with_hundreds_of_checkpoints_to_drop_is_pruned_in_one_go(
        saver: BaseCheckpointSaver[Any]) -> None:
    app = graph(saver)
    await run_turns(app, "many", 250)
    config = {"configurable": {"thread_id": "many"}}
    before = (await app.aget_state(config)).values
    report = await prune(saver, now=datetime.now(UTC), keep_last=1, graph=app)
    assert report.checkpoints_deleted > 500 and report.checkpoints_kept == 1, report
    assert (await app.aget_state(config)).values == before


async def test_dropping_ancestors_without_their_snapshot_would_lose_the_log(
        saver: BaseCheckpointSaver[Any]) -> None:
    # What retention guards against, shown: keep only the newest two checkpoints, as a naive
    # keep-latest does, and the delta channel reads back short.
    from checkpoints.retention import _delete, _plan

    app = graph(saver)
    await run_turns(app, "naive", 10)
    kept, doomed, boundary, deltas = await _plan(saver, "naive", "", keep_last=2)
    assert deltas and boundary == kept[-1:]
    await _delete(saver, "naive", "", set(doomed))  # without the snapshot first
    state = (await app.aget_state({"configurable": {"thread_id": "naive"}})).values
    assert state["log"] != list(range(10))


async def test_idle_threads_are_deleted_whole_and_a_dry_run_deletes_nothing(
        saver: BaseCheckpointSaver[Any]) -> None:
    app = graph(saver)
    await run_turns(app, "a", 2)
    await run_turns(app, "b", 2)
    later = datetime.now(UTC) + timedelta(days=31)
    dry = await prune(saver, now=later, older_than=timedelta(days=30), dry_run=True)
    assert dry == PruneReport(threads=2, threads_deleted=2, checkpoints_deleted=0,
                              checkpoints_kept=0, dry_run=True)
    assert (await storage_report(saver))["threads"] == 2
    done = await prune(saver, now=later, older_than=timedelta(days=30))
    assert done.threads_deleted == 2
    report = await storage_report(saver)
    assert report["threads"] == 0 and sum(report["rows"].values()) == 0
    await vacuum(saver)
    if report["backend"] == "sqlite":
        assert (await storage_report(saver))["free_bytes"] == 0
