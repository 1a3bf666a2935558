"""One SQL seam for the control plane's own tables: a SQLite file, or Postgres for replicas.

The effects journal writes the same statements to either (`?` placeholders; Postgres gets
`%s`). A transaction locks its table against other writers for its length on both: SQLite's
`BEGIN IMMEDIATE`, Postgres's `LOCK TABLE ... IN SHARE ROW EXCLUSIVE MODE`, so two processes
racing each other under a limit are serialised as two threads of one process are. Calls are
blocking: callers run them in a thread (`asyncio.to_thread`), never on the event loop.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from graphs.core.errors import ConfigError

__all__ = ["Database", "PostgresDatabase", "Rows", "SqliteDatabase", "open_database"]

Rows = list[tuple[Any, ...]]
"""Rows as tuples, in the order the statement selects them."""


class Cursor(Protocol):
    """What a statement returns: its rows and their column names."""

    description: Any

    def fetchone(self) -> Any:
        """The next row, or None."""

    def fetchall(self) -> list[Any]:
        """Every row left."""


class Connection(Protocol):
    """Executes statements inside one transaction (`?` placeholders on both backends)."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one statement."""


class Database(Protocol):
    """A SQLite file or a Postgres database holding one table of the control plane's."""

    name: str
    """Where it is, for messages (no credentials)."""

    def ready(self) -> bool:
        """Whether it has been created (a SQLite file that does not exist has no rows)."""

    def transaction(self, work: Callable[[Connection], Any]) -> Any:
        """Run `work` in one transaction holding the table's write lock; commit or roll back."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        """Run one statement on its own (committed when it returns); its rows, if any."""

    def columns(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], Rows]:
        """Run a query; its column names and rows."""

    def close(self) -> None:
        """Let go of its connections."""


_WAL_SWITCH = threading.Lock()


def _wal(conn: sqlite3.Connection, wait_s: float = 30.0) -> None:
    """Put the file in WAL mode.

    Switching the journal mode takes the database's exclusive lock and SQLite's busy timeout
    does not cover it: threads opening a new file together get "database is locked" at once.
    One thread of this process switches at a time, and a switch that meets another process's
    lock waits for it, up to `wait_s` (a local file's set-up, not a dependency call).
    """
    deadline = time.monotonic() + wait_s
    with _WAL_SWITCH:
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)


class SqliteDatabase:
    """A SQLite file in WAL mode, one connection per thread."""

    def __init__(self, path: Path, *, table: str, schema: str,
                 added: Mapping[str, str] | None = None, indexes: Sequence[str] = ()) -> None:
        self.path = path
        self.name = str(path)
        self._table = table
        self._schema = schema
        self._added = dict(added or {})
        self._indexes = list(indexes)
        self._local = threading.local()

    def ready(self) -> bool:
        """Whether the file exists."""
        return self.path.exists()

    def _connect(self) -> sqlite3.Connection:
        """The calling thread's connection (autocommit: a write is committed when it returns)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            _wal(conn)
            conn.execute("BEGIN IMMEDIATE")  # one connection at a time creates or migrates
            try:
                conn.execute(self._schema)
                have = {row[1] for row in conn.execute(f"PRAGMA table_info({self._table})")}
                for name, kind in self._added.items():
                    if name not in have:
                        conn.execute(f"ALTER TABLE {self._table} ADD COLUMN {name} {kind}")
                for statement in self._indexes:
                    conn.execute(statement)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                conn.close()
                raise
            self._local.conn = conn
        return conn

    def transaction(self, work: Callable[[Connection], Any]) -> Any:
        """`BEGIN IMMEDIATE`: every other writer waits until this one commits."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            result = work(_Sqlite(conn))
            conn.execute("COMMIT")
            return result
        except BaseException:
            if conn.in_transaction:  # the connection is kept: leave it clean
                conn.execute("ROLLBACK")
            raise

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        """One statement, autocommitted."""
        return [tuple(row) for row in self._connect().execute(sql, tuple(params)).fetchall()]

    def columns(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], Rows]:
        """A query's column names and rows."""
        cursor = self._connect().execute(sql, tuple(params))
        return [c[0] for c in cursor.description], [tuple(r) for r in cursor.fetchall()]

    def close(self) -> None:
        """Nothing shared to close (each thread's connection closes with the thread)."""


class _Placeholders:
    """A psycopg connection that takes `?` placeholders (the statements are shared)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        # The statements are the journal's own: `?` is a placeholder in each, and none holds a
        # literal `?` or `%` (which this rewriting would break).
        if "%" in sql:
            raise ValueError("a statement for both backends may not contain '%'")
        return self._conn.execute(sql.replace("?", "%s"), tuple(params))


class _Sqlite:
    """A sqlite3 connection as a `Connection` (parameters as a tuple)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(sql, tuple(params))


class PostgresDatabase:
    """A table in Postgres, reached through a checked connection pool opened on first use."""

    def __init__(self, url: str, *, table: str, schema: str,
                 added: Mapping[str, str] | None = None, indexes: Sequence[str] = (),
                 max_size: int = 8) -> None:
        self.name = url.rpartition("@")[2] or url
        self._url = url
        self._table = table
        self._schema = schema
        self._added = dict(added or {})
        self._indexes = list(indexes)
        self._max_size = max_size
        self._pool: Any = None
        self._lock = threading.Lock()

    def _open(self) -> Any:
        with self._lock:
            if self._pool is not None:
                return self._pool
            import psycopg
            from psycopg_pool import ConnectionPool

            try:  # a server that is not there says so now, not after the pool's wait
                psycopg.connect(self._url, connect_timeout=5).close()
            except psycopg.Error as exc:
                raise ConfigError(f"cannot reach Postgres at {self.name}: "
                                  f"{' '.join(str(exc).split())}",
                                  variable="INTERLOCK_DATABASE_URL") from None
            pool = ConnectionPool(self._url, min_size=1, max_size=self._max_size, open=False,
                                  timeout=30, check=ConnectionPool.check_connection)
            try:
                pool.open(wait=True, timeout=10)
                with pool.connection() as conn, conn.transaction():
                    # Replicas starting together: one creates or migrates, the others wait.
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                                 (f"interlock:{self._table}",))
                    conn.execute(self._schema)
                    have = {r[0] for r in conn.execute(
                        "SELECT column_name FROM information_schema.columns WHERE table_name "
                        "= %s AND table_schema = current_schema()", (self._table,)).fetchall()}
                    # Only what is missing: an ALTER locks the table against every reader.
                    for name, kind in self._added.items():
                        if name not in have:
                            conn.execute(f"ALTER TABLE {self._table} ADD COLUMN IF NOT EXISTS "
                                         f"{name} {kind}")
                    for statement in self._indexes:
                        conn.execute(statement)
            except Exception as exc:  # psycopg's PoolTimeout or OperationalError
                pool.close()
                raise ConfigError(f"cannot reach Postgres at {self.name}: {exc}",
                                  variable="INTERLOCK_DATABASE_URL") from None
            self._pool = pool
            return pool

    def ready(self) -> bool:
        """Always: the table was created when this opened."""
        return True

    def transaction(self, work: Callable[[Connection], Any]) -> Any:
        """The table locked against other writers (every process) until this one commits."""
        with self._open().connection() as conn, conn.transaction():
            conn.execute(f"LOCK TABLE {self._table} IN SHARE ROW EXCLUSIVE MODE")
            return work(_Placeholders(conn))

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        """One statement in a transaction of its own."""
        with self._open().connection() as conn:
            cursor = _Placeholders(conn).execute(sql, params)
            return [tuple(r) for r in cursor.fetchall()] if cursor.description else []

    def columns(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], Rows]:
        """A query's column names and rows."""
        with self._open().connection() as conn:
            cursor = _Placeholders(conn).execute(sql, params)
            return ([c.name for c in cursor.description],
                    [tuple(r) for r in cursor.fetchall()])

    def close(self) -> None:
        """Close the pool, if it was opened."""
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None


def open_database(url: str | None, path: Path, *, table: str, schema: str,
                  added: Mapping[str, str] | None = None,
                  indexes: Sequence[str] = ()) -> Database:
    """Postgres when `url` names it, else the SQLite file at `path`."""
    if url:
        return PostgresDatabase(url, table=table, schema=schema, added=added, indexes=indexes)
    return SqliteDatabase(path, table=table, schema=schema, added=added, indexes=indexes)
