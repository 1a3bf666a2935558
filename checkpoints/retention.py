"""Retention: old threads deleted, long threads pruned, delta channels still readable.

LangGraph's SQLite saver has no `prune`, and its Postgres saver refuses `keep_latest` on threads
that use a `DeltaChannel`: such a channel stores only its new writes in most checkpoints and is
rebuilt by replaying ancestors' writes back to the nearest snapshot, so dropping ancestors
naively empties it without an error. This follows the second safe way LangGraph's own docs
describe: the oldest checkpoint kept is first made a full snapshot of every delta channel
(the values read through the graph, stored as the saver stores its own snapshots), then
everything older goes, and every kept checkpoint reads exactly as before. (Keeping the
ancestors a kept checkpoint replays from, the first way, leaves those ancestors themselves
partly unreadable: their channels snapshot at other steps.) Threads whose latest
checkpoint is older than the cut-off are deleted whole. Works on both savers (SQL per saver
for the deletes; the reads go through the saver's own API). Run it on quiet threads: a thread
deleted whole while a new run starts on it loses that run's first checkpoints, and a run
resumed (or forked) from a checkpoint being pruned may find it gone. Subgraph namespaces keep
their own newest checkpoints.
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
    snapshots_written: int = 0
    """Oldest kept checkpoints made full snapshots of their delta channels first."""
    namespaces_skipped: int = 0
    """Namespaces using delta channels left whole (no graph to read them, or a subgraph's)."""
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


async def _plan(saver: BaseCheckpointSaver[Any], thread: str, ns: str, keep_last: int
                ) -> tuple[list[str], list[str], list[str], bool]:
    """(kept, doomed, boundary, uses deltas) for one namespace.

    Kept: the `keep_last` newest. Boundary: the kept checkpoints whose parent goes; each is
    made a snapshot of every delta channel before anything older is deleted, so that it, and
    every kept checkpoint after it, reads as before.
    """
    tuples = [t async for t in saver.alist(_config(thread, ns))]
    ids = [t.config["configurable"]["checkpoint_id"] for t in tuples]
    kept = ids[:keep_last]
    doomed = ids[keep_last:]
    gone = set(doomed)
    boundary = [t.config["configurable"]["checkpoint_id"] for t in tuples[:keep_last]
                if t.parent_config is not None
                and t.parent_config["configurable"].get("checkpoint_id") in gone]
    deltas = any((t.metadata or {}).get("counters_since_delta_snapshot") for t in tuples)
    return kept, doomed, boundary, deltas


async def _snapshot(saver: Any, graph: Any, thread: str, ns: str, checkpoint_id: str) -> None:
    """Write every delta channel's full value into one checkpoint (a `_DeltaSnapshot`).

    LangGraph's second safe way (see `BaseCheckpointSaver.prune`): the values come from the
    graph reading that checkpoint (the ancestors still there), stored as the saver stores a
    snapshot it takes itself.
    """
    from langgraph.channels.delta import DeltaChannel
    from langgraph.checkpoint.serde.types import _DeltaSnapshot

    config = _config(thread, ns, checkpoint_id)
    held = await saver.aget_tuple(config)
    # Only channels this checkpoint has a version of: one never written reads as its empty
    # value, and a snapshot of it would make it look written.
    written = set(held.checkpoint["channel_versions"]) if held is not None else set()
    names = [k for k, c in graph.channels.items()
             if isinstance(c, DeltaChannel) and k in written]
    state = await graph.aget_state(config)
    values = {k: state.values[k] for k in names if k in (state.values or {})}
    if _kind(saver) == "sqlite":
        async with saver.lock:
            async with saver.conn.execute(
                    "SELECT type, checkpoint FROM checkpoints WHERE thread_id = ? AND "
                    "checkpoint_ns = ? AND checkpoint_id = ?",
                    (thread, ns, checkpoint_id)) as cursor:
                row = await cursor.fetchone()
            checkpoint = saver.serde.loads_typed((row[0], row[1]))
            for name, value in values.items():
                checkpoint["channel_values"][name] = _DeltaSnapshot(value)
            kind, blob = saver.serde.dumps_typed(checkpoint)
            await saver.conn.execute(
                "UPDATE checkpoints SET type = ?, checkpoint = ? WHERE thread_id = ? AND "
                "checkpoint_ns = ? AND checkpoint_id = ?", (kind, blob, thread, ns,
                                                           checkpoint_id))
            await saver.conn.commit()
        return
    async with saver.conn.connection() as conn, conn.transaction(), conn.cursor() as cursor:
        for name, value in values.items():
            kind, blob = saver.serde.dumps_typed(_DeltaSnapshot(value))
            await cursor.execute(
                "INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, "
                "blob) SELECT thread_id, checkpoint_ns, %s, checkpoint -> 'channel_versions' "
                "->> %s, %s, %s FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = %s "
                "AND checkpoint_id = %s AND checkpoint -> 'channel_versions' ? %s "
                "ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO UPDATE SET type = "
                "EXCLUDED.type, blob = EXCLUDED.blob",
                (name, name, kind, blob, thread, ns, checkpoint_id, name))
            await cursor.execute(
                "UPDATE checkpoints SET checkpoint = jsonb_set(checkpoint, "
                "ARRAY['channel_values', %s], 'true'::jsonb) WHERE thread_id = %s AND "
                "checkpoint_ns = %s AND checkpoint_id = %s AND checkpoint -> "
                "'channel_versions' ? %s", (name, thread, ns, checkpoint_id, name))


async def _delete(saver: Any, thread: str, ns: str, doomed: set[str]) -> None:
    ids = sorted(doomed)
    if _kind(saver) == "sqlite":
        async with saver.lock:
            for at in range(0, len(ids), 500):  # under SQLite's limit of bound parameters
                chunk = ids[at:at + 500]
                for table in ("checkpoints", "writes"):
                    await saver.conn.execute(
                        f"DELETE FROM {table} WHERE thread_id = ? AND checkpoint_ns = ? AND "
                        f"checkpoint_id IN ({','.join('?' * len(chunk))})", (thread, ns, *chunk))
            await saver.conn.commit()
        return
    async with saver.conn.connection() as conn, conn.transaction(), conn.cursor() as cursor:
        # Channel values the deleted checkpoints referred to and no other checkpoint does: only
        # versions those checkpoints name, so the blobs a run is writing now (a new version,
        # its checkpoint row not yet in) are never touched.
        await cursor.execute(
            "DELETE FROM checkpoint_blobs b USING checkpoints d, "
            "jsonb_each_text(d.checkpoint -> 'channel_versions') v(channel, version) "
            "WHERE d.thread_id = %s AND d.checkpoint_ns = %s AND d.checkpoint_id = ANY(%s) "
            "AND b.thread_id = d.thread_id AND b.checkpoint_ns = d.checkpoint_ns AND "
            "b.channel = v.channel AND b.version = v.version AND NOT EXISTS "
            "(SELECT 1 FROM checkpoints c WHERE c.thread_id = b.thread_id AND c.checkpoint_ns = "
            "b.checkpoint_ns AND NOT c.checkpoint_id = ANY(%s) AND "
            "c.checkpoint -> 'channel_versions' ->> b.channel = b.version)",
            (thread, ns, ids, ids))
        for table in ("checkpoints", "checkpoint_writes"):
            await cursor.execute(f"DELETE FROM {table} WHERE thread_id = %s AND checkpoint_ns "
                                 f"= %s AND checkpoint_id = ANY(%s)", (thread, ns, ids))


async def prune(saver: BaseCheckpointSaver[Any], *, now: datetime,
                older_than: timedelta | None = None, keep_last: int | None = None,
                graph: Any = None, threads: Sequence[str] | None = None,
                dry_run: bool = False) -> PruneReport:
    """Delete idle threads; keep the newest checkpoints of the rest, every one readable.

    Threads whose latest checkpoint is older than `now - older_than` go whole. Of the others,
    each namespace keeps its `keep_last` newest checkpoints. Where those use delta channels,
    the oldest kept one is first made a full snapshot of them (`graph`, the compiled graph
    that wrote them, reads the values), so every kept checkpoint reads as it did; without
    `graph`, or in a subgraph's namespace, a thread using delta channels is left as it is.
    """
    if keep_last is not None and keep_last < 1:
        raise ValueError("keep_last must be at least 1")
    chosen = list(threads) if threads is not None else await thread_ids(saver)
    deleted = removed = left = snapshots = skipped = 0
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
        if keep_last is None:
            continue
        namespaces = [str(r[0]) for r in await _rows(
            saver, "SELECT DISTINCT checkpoint_ns FROM checkpoints WHERE thread_id = ?",
            (thread,))]
        for ns in namespaces:
            kept, doomed, boundary, deltas = await _plan(saver, thread, ns, keep_last)
            if doomed and deltas and (graph is None or ns):
                skipped += 1  # no safe way to cut it here: kept whole
                left += len(kept) + len(doomed)
                continue
            removed += len(doomed)
            left += len(kept)
            if not doomed or dry_run:
                snapshots += len(boundary) if deltas else 0
                continue
            if deltas:
                for checkpoint_id in boundary:
                    await _snapshot(saver, graph, thread, ns, checkpoint_id)
                    snapshots += 1
            await _delete(saver, thread, ns, set(doomed))
    return PruneReport(threads=len(chosen), threads_deleted=deleted,
                       checkpoints_deleted=removed, checkpoints_kept=left,
                       snapshots_written=snapshots, namespaces_skipped=skipped,
                       dry_run=dry_run)


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
