"""Retention: old threads deleted, long threads pruned, delta channels still readable.

LangGraph's SQLite saver has no `prune`, and its Postgres saver refuses `keep_latest` on threads
that use a `DeltaChannel`: such a channel stores only its new writes in most checkpoints and is
rebuilt by replaying ancestors' writes back to the nearest snapshot, so dropping ancestors
naively empties it without an error. This follows the safe way LangGraph's own docs describe:
each kept checkpoint keeps every ancestor (and its writes) back to the nearest one that holds
a snapshot of every delta channel it still needs; everything older goes. Threads whose latest
checkpoint is older than the cut-off are deleted whole. Works on both savers (SQL per saver
for the deletes; the reads go through the saver's own API).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

__all__ = ["PruneReport", "prune", "storage_report", "thread_ids", "vacuum"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneReport:
    """What a prune did (or, dry, would do)."""

    threads: int
    """Threads looked at."""
    threads_deleted: int
    """Threads deleted whole (latest checkpoint older than the cut-off)."""
    checkpoints_deleted: int
    """Checkpoints deleted from the threads kept."""
    checkpoints_kept: int
    """Checkpoints left in the threads kept."""
    kept_for_deltas: int
    """Of those, ancestors kept only so that delta channels of newer ones still read."""
    dry_run: bool = False
    """Nothing was deleted."""


def _kind(saver: BaseCheckpointSaver[Any]) -> str:
    name = type(saver).__mro__
    if any(c.__name__ == "AsyncPostgresSaver" for c in name):
        return "postgres"
    if any(c.__name__ == "AsyncSqliteSaver" for c in name):
        return "sqlite"
    raise TypeError(f"retention knows AsyncSqliteSaver and AsyncPostgresSaver, not "
                    f"{type(saver).__name__}")


async def _rows(saver: Any, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    if _kind(saver) == "sqlite":
        async with saver.lock, saver.conn.execute(sql, tuple(params)) as cursor:
            return [tuple(r) for r in await cursor.fetchall()]
    async with saver.conn.connection() as conn, conn.cursor() as cursor:
        await cursor.execute(sql.replace("?", "%s"), tuple(params))
        return [tuple(r.values()) if isinstance(r, dict) else tuple(r)
                for r in await cursor.fetchall()]


async def thread_ids(saver: BaseCheckpointSaver[Any]) -> list[str]:
    """Every thread with a checkpoint."""
    return [str(r[0]) for r in await _rows(saver, "SELECT DISTINCT thread_id FROM checkpoints "
                                                  "ORDER BY thread_id", ())]


def _config(thread: str, ns: str, checkpoint_id: str | None = None) -> Any:
    configurable = {"thread_id": thread, "checkpoint_ns": ns}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


async def _keep(saver: BaseCheckpointSaver[Any], thread: str, ns: str,
                keep_last: int) -> tuple[set[str], set[str], int]:
    """The checkpoints of one namespace to keep: the newest, and what their deltas need.

    Returns (kept ids, every id, how many were kept for deltas only).
    """
    ids = [t.config["configurable"]["checkpoint_id"]
           async for t in saver.alist(_config(thread, ns))]
    newest = set(ids[:keep_last])
    kept = set(newest)
    walked: set[str] = set()
    for start in ids[:keep_last]:
        target = await saver.aget_tuple(_config(thread, ns, start))
        if target is None:
            continue
        deltas = set((target.metadata or {}).get("counters_since_delta_snapshot") or {})
        remaining = deltas - set(target.checkpoint["channel_values"])
        cursor = target.parent_config
        while cursor is not None and remaining:
            parent_id = cursor["configurable"]["checkpoint_id"]
            if parent_id in walked:
                break  # walked from a newer kept checkpoint already, to its own seeds
            walked.add(parent_id)
            parent = await saver.aget_tuple(cursor)
            if parent is None:
                break
            kept.add(parent_id)
            remaining -= set(parent.checkpoint["channel_values"])
            cursor = parent.parent_config
    return kept, set(ids), len(kept - newest)


async def _delete(saver: Any, thread: str, ns: str, doomed: set[str]) -> None:
    marks = ",".join("?" * len(doomed))
    args = (thread, ns, *sorted(doomed))
    if _kind(saver) == "sqlite":
        async with saver.lock:
            for table in ("checkpoints", "writes"):
                await saver.conn.execute(f"DELETE FROM {table} WHERE thread_id = ? AND "
                                         f"checkpoint_ns = ? AND checkpoint_id IN ({marks})",
                                         args)
            await saver.conn.commit()
        return
    async with saver.conn.connection() as conn, conn.transaction(), conn.cursor() as cursor:
        for table in ("checkpoints", "checkpoint_writes"):
            await cursor.execute(f"DELETE FROM {table} WHERE thread_id = %s AND checkpoint_ns "
                                 f"= %s AND checkpoint_id IN ({marks.replace('?', '%s')})",
                                 args)
        # Channel values no kept checkpoint refers to any more.
        await cursor.execute(
            "DELETE FROM checkpoint_blobs b WHERE b.thread_id = %s AND b.checkpoint_ns = %s "
            "AND NOT EXISTS (SELECT 1 FROM checkpoints c WHERE c.thread_id = b.thread_id AND "
            "c.checkpoint_ns = b.checkpoint_ns AND "
            "c.checkpoint -> 'channel_versions' ->> b.channel = b.version)", (thread, ns))


async def prune(saver: BaseCheckpointSaver[Any], *, now: datetime,
                older_than: timedelta | None = None, keep_last: int | None = None,
                threads: Sequence[str] | None = None, dry_run: bool = False) -> PruneReport:
    """Delete idle threads; keep the newest checkpoints of the rest, and what they need.

    Threads whose latest checkpoint is older than `now - older_than` go whole. Of the others,
    each namespace keeps its `keep_last` newest checkpoints and the ancestors their delta
    channels replay from.
    """
    if keep_last is not None and keep_last < 1:
        raise ValueError("keep_last must be at least 1")
    chosen = list(threads) if threads is not None else await thread_ids(saver)
    deleted = removed = left = for_deltas = 0
    for thread in chosen:
        latest = await saver.aget_tuple(_config(thread, ""))
        if latest is None:
            continue
        at = datetime.fromisoformat(str(latest.checkpoint["ts"]))
        if older_than is not None and at < now - older_than:
            deleted += 1
            if not dry_run:
                await saver.adelete_thread(thread)
            continue
        namespaces = [str(r[0]) for r in await _rows(
            saver, "SELECT DISTINCT checkpoint_ns FROM checkpoints WHERE thread_id = ?",
            (thread,))]
        for ns in namespaces:
            if keep_last is None:
                continue
            kept, every, extra = await _keep(saver, thread, ns, keep_last)
            doomed = every - kept
            removed += len(doomed)
            left += len(kept)
            for_deltas += extra
            if doomed and not dry_run:
                await _delete(saver, thread, ns, doomed)
    return PruneReport(threads=len(chosen), threads_deleted=deleted,
                       checkpoints_deleted=removed, checkpoints_kept=left,
                       kept_for_deltas=for_deltas, dry_run=dry_run)


async def storage_report(saver: BaseCheckpointSaver[Any]) -> dict[str, Any]:
    """Rows per table and bytes on disk (SQLite: the file, its free pages; Postgres: tables)."""
    if _kind(saver) == "sqlite":
        lite = ("checkpoints", "writes")
        counts = {t: int((await _rows(saver, f"SELECT count(*) FROM {t}", ()))[0][0])
                  for t in lite}
        pages = {p: int((await _rows(saver, f"PRAGMA {p}", ()))[0][0])
                 for p in ("page_count", "page_size", "freelist_count")}
        return {"backend": "sqlite", "rows": counts,
                "bytes": pages["page_count"] * pages["page_size"],
                "free_bytes": pages["freelist_count"] * pages["page_size"],
                "threads": len(await thread_ids(saver))}
    tables = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
    counts = {t: int((await _rows(saver, f"SELECT count(*) FROM {t}", ()))[0][0])
              for t in tables}
    size = {t: int((await _rows(saver, "SELECT pg_total_relation_size(?::regclass)",
                                (t,)))[0][0]) for t in tables}
    return {"backend": "postgres", "rows": counts, "bytes": sum(size.values()),
            "table_bytes": size, "threads": len(await thread_ids(saver))}


async def vacuum(saver: BaseCheckpointSaver[Any]) -> None:
    """Give space back: SQLite `VACUUM` (the file shrinks), Postgres `VACUUM` of its tables."""
    raw: Any = saver
    if _kind(saver) == "sqlite":
        async with raw.lock:
            await raw.conn.commit()
            await raw.conn.execute("VACUUM")
        return
    async with raw.conn.connection() as conn:
        await conn.set_autocommit(True)
        for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes"):
            await conn.execute(f"VACUUM {table}")
