"""The checkpointer factory: SQLite under INTERLOCK_HOME, WAL, durable against process crashes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

__all__ = ["open_checkpointer"]


@asynccontextmanager
async def open_checkpointer(path: Path, *, synchronous: str = "NORMAL"
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
        saver = AsyncSqliteSaver(conn)
        await saver.setup()
        yield saver
