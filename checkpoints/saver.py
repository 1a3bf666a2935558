"""The checkpointer factory: SQLite under INTERLOCK_HOME, WAL, durable against process crashes."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

__all__ = ["CrashingSaver", "open_checkpointer"]


class CrashingSaver(AsyncSqliteSaver):
    """Crash injection for recovery tests: SIGKILL this process after the N-th record.

    `what` is `checkpoints` (count `aput`) or `writes` (count `aput_writes`); the record is
    committed first, so the crash lands exactly between two durable records.
    """

    def __init__(self, conn: aiosqlite.Connection, *, what: str, after: int) -> None:
        super().__init__(conn)
        self._what = what
        self._after = after
        self._seen = 0

    def _count(self, what: str) -> None:
        if what == self._what:
            self._seen += 1
            if self._seen == self._after:
                os.kill(os.getpid(), signal.SIGKILL)

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint,
                   metadata: CheckpointMetadata, new_versions: ChannelVersions
                   ) -> RunnableConfig:
        """Save a checkpoint, then count it."""
        saved = await super().aput(config, checkpoint, metadata, new_versions)
        self._count("checkpoints")
        return saved

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                          task_id: str, task_path: str = "") -> None:
        """Save a task's writes, then count them."""
        await super().aput_writes(config, writes, task_id, task_path)
        self._count("writes")


@asynccontextmanager
async def open_checkpointer(path: Path, *, synchronous: str = "NORMAL",
                            crash_after: tuple[str, int] | None = None
                            ) -> AsyncIterator[AsyncSqliteSaver]:
    """An `AsyncSqliteSaver` on `path` in WAL mode.

    `synchronous=NORMAL` keeps every committed checkpoint through a process crash (SIGKILL);
    `FULL` also through a power loss, at an fsync per checkpoint.
    """
    if synchronous not in ("NORMAL", "FULL"):
        raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    async with aiosqlite.connect(path, timeout=30) as conn:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute(f"PRAGMA synchronous={synchronous}")
        await conn.execute("PRAGMA busy_timeout=30000")
        saver = (CrashingSaver(conn, what=crash_after[0], after=crash_after[1])
                 if crash_after else AsyncSqliteSaver(conn))
        await saver.setup()
        yield saver
