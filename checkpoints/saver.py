"""The checkpointer factory: SQLite under INTERLOCK_HOME by default, Postgres when configured.

SQLite runs in WAL mode, durable against process crashes. Postgres (`INTERLOCK_DATABASE_URL`)
is LangGraph's own `AsyncPostgresSaver` on a connection pool that checks a connection before
handing it out, so one the server or a network cut killed while idle is replaced, not used.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
)
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from graphs.core.errors import ConfigError

__all__ = ["CrashingSaver", "is_postgres", "open_checkpointer", "open_postgres_checkpointer",
           "open_saver", "postgres_pool"]

POOL_MAX = 10
"""Most connections one process holds to Postgres for checkpoints."""


def is_postgres(url: str | None) -> bool:
    """Whether a database URL names Postgres."""
    return bool(url) and str(url).startswith(("postgresql://", "postgres://"))


class _Crashing:
    """Crash injection for recovery tests: SIGKILL this process after the N-th record.

    `what` is `checkpoints` (count `aput`) or `writes` (count `aput_writes`); the record is
    committed first, so the crash lands exactly between two durable records.
    """

    _what: str
    _after: int
    _seen: int

    def _arm(self, what: str, after: int) -> None:
        self._what, self._after, self._seen = what, after, 0

    def _count(self, what: str) -> None:
        if what == self._what:
            self._seen += 1
            if self._seen == self._after:
                os.kill(os.getpid(), signal.SIGKILL)

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint,
                   metadata: CheckpointMetadata, new_versions: ChannelVersions
                   ) -> RunnableConfig:
        """Save a checkpoint, then count it."""
        saved: RunnableConfig = await super().aput(  # type: ignore[misc]
            config, checkpoint, metadata, new_versions)
        self._count("checkpoints")
        return saved

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                          task_id: str, task_path: str = "") -> None:
        """Save a task's writes, then count them."""
        await super().aput_writes(config, writes, task_id, task_path)  # type: ignore[misc]
        self._count("writes")


class CrashingSaver(_Crashing, AsyncSqliteSaver):
    """`AsyncSqliteSaver` that SIGKILLs its process after the N-th record (tests)."""

    def __init__(self, conn: aiosqlite.Connection, *, what: str, after: int) -> None:
        super().__init__(conn)
        self._arm(what, after)


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


@asynccontextmanager
async def postgres_pool(url: str, *, max_size: int = POOL_MAX) -> AsyncIterator[Any]:
    """A psycopg async pool as LangGraph's Postgres saver wants its connections.

    Every connection is checked before it is handed out (`check_connection`), so one killed
    while idle (a server restart, a proxy's idle timeout) is replaced instead of failing a run.
    """
    import psycopg
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    try:  # a server that is not there says so now, not after the pool's wait
        probe = await psycopg.AsyncConnection.connect(url, connect_timeout=5)
    except psycopg.Error as exc:
        raise ConfigError(f"cannot reach Postgres at {_safe(url)}: {' '.join(str(exc).split())}",
                          variable="INTERLOCK_DATABASE_URL") from None
    await probe.close()
    pool = AsyncConnectionPool(
        url, min_size=1, max_size=max_size, open=False, timeout=30,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        check=AsyncConnectionPool.check_connection)
    try:
        await pool.open(wait=True, timeout=10)
    except Exception as exc:  # psycopg's PoolTimeout or OperationalError
        await pool.close()
        raise ConfigError(f"cannot reach Postgres at {_safe(url)}: {exc}",
                          variable="INTERLOCK_DATABASE_URL") from None
    try:
        yield pool
    finally:
        await pool.close()


def _safe(url: str) -> str:
    """The URL without its password."""
    head, at, tail = url.rpartition("@")
    return f"{head.split(':')[0]}://…@{tail}" if at else url


@asynccontextmanager
async def open_postgres_checkpointer(url: str, *,
                                     crash_after: tuple[str, int] | None = None
                                     ) -> AsyncIterator[BaseCheckpointSaver[str]]:
    """LangGraph's `AsyncPostgresSaver` on a checked pool, its tables set up."""
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    class CrashingPostgresSaver(_Crashing, AsyncPostgresSaver):
        """`AsyncPostgresSaver` that SIGKILLs its process after the N-th record (tests)."""

    async with postgres_pool(url) as pool:
        saver: AsyncPostgresSaver
        if crash_after:
            crashing = CrashingPostgresSaver(pool)
            crashing._arm(*crash_after)
            saver = crashing
        else:
            saver = AsyncPostgresSaver(pool)
        await saver.setup()
        yield saver


@asynccontextmanager
async def open_saver(*, database_url: str | None, path: Path, synchronous: str = "NORMAL",
                     crash_after: tuple[str, int] | None = None
                     ) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """The configured checkpointer: Postgres when `database_url` names it, else SQLite."""
    if database_url and not is_postgres(database_url):
        raise ConfigError("expected a postgresql:// URL", variable="INTERLOCK_DATABASE_URL")
    if database_url:
        async with open_postgres_checkpointer(database_url, crash_after=crash_after) as pg:
            yield pg
        return
    async with open_checkpointer(path, synchronous=synchronous, crash_after=crash_after) as lite:
        yield lite
