"""Checkpoint storage: bytes per step as a thread grows, and `asof` query times.

Builds (a) one conversation of at least 1,000 steps and (b) a database of at least 10,000
checkpoints over many threads, then measures, on this machine:
- checkpoint bytes per step (checkpoint blobs plus pending writes, as SQLite stores them) for
  the first and the last turns of the long thread: if it grows, every step pays for history;
- the median time of `asof --step` and `asof --at` queries on the long thread and on one thread
  of the big database.
Run: `.venv/bin/python bench/storage.py [--steps N] [--database-url postgresql://...] [--json]`
(with a Postgres URL, the long thread only, on that database).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from graphs.runner import Interlock, open_interlock
from graphs.settings import Settings

HISTORY_CAP_S = 120.0
"""How long the full history of the long thread may take before the bench stops waiting."""
MESSAGES = ["Where is my order 1042?", "What is your return policy?",
            "What is the status of order 1001?", "Where is order 1007?"]


def _bytes(db: Path | str, thread: str) -> tuple[int, int]:
    """(checkpoints, bytes) stored for a thread's main graph, pending writes included.

    `db`: the SQLite file, or a Postgres URL (checkpoints, their channel blobs and writes).
    """
    if isinstance(db, str):
        import psycopg

        with psycopg.connect(db) as pg:
            count, size = pg.execute(
                "SELECT count(*), coalesce(sum(octet_length(checkpoint::text) + "
                "octet_length(metadata::text)), 0) FROM checkpoints WHERE thread_id = %s",
                (thread,)).fetchone() or (0, 0)
            blobs = (pg.execute("SELECT coalesce(sum(octet_length(blob)), 0) FROM "
                                "checkpoint_blobs WHERE thread_id = %s", (thread,)).fetchone()
                     or (0,))[0]
            writes = (pg.execute("SELECT coalesce(sum(octet_length(blob)), 0) FROM "
                                 "checkpoint_writes WHERE thread_id = %s", (thread,)).fetchone()
                      or (0,))[0]
        return int(count), int(size) + int(blobs) + int(writes)
    with sqlite3.connect(db) as conn:
        count, blobs = conn.execute(
            "SELECT count(*), coalesce(sum(length(checkpoint) + length(metadata)), 0) "
            "FROM checkpoints WHERE thread_id = ?", (thread,)).fetchone()
        writes = conn.execute("SELECT coalesce(sum(length(value)), 0) FROM writes "
                              "WHERE thread_id = ?", (thread,)).fetchone()[0]
    return int(count), int(blobs) + int(writes)


REPEAT = {"n": 20}
"""Timings per query (`--repeat`): the median is reported."""


async def _time(call: Any) -> float:
    samples = []
    for _ in range(REPEAT["n"]):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def long_thread(app: Interlock, db: Path | str, steps: int) -> dict[str, Any]:
    thread = "long-thread"
    per_turn: list[tuple[int, float]] = []  # (first step of the turn, bytes per step)
    count, size = 0, 0
    turn = 0
    while count < steps:
        result = await app.run(MESSAGES[turn % len(MESSAGES)], thread_id=thread)
        assert result.status == "completed", result.answer
        new_count, new_size = _bytes(db, thread)
        per_turn.append((count, (new_size - size) / max(1, new_count - count)))
        count, size = new_count, new_size
        turn += 1
    first = statistics.mean(b for _, b in per_turn[:5])
    last = statistics.mean(b for _, b in per_turn[-5:])
    # The middle step, found the way `asof` finds one (a metadata filter), not by reading the
    # whole history: that replays every checkpoint's delta channels (timed below, capped).
    saver = app.graph.checkpointer
    mid = count // 2
    [row] = [r async for r in saver.alist(  # type: ignore[union-attr]
        {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}, filter={"step": mid},
        limit=1)]
    moment = datetime.fromisoformat(str(row.checkpoint["ts"]))
    started = time.perf_counter()
    try:
        await asyncio.wait_for(app.history(thread), HISTORY_CAP_S)
        history_s: float | str = round(time.perf_counter() - started, 1)
    except TimeoutError:
        history_s = f"> {HISTORY_CAP_S:g}"
    return {
        "turns": turn, "checkpoints": count, "total_bytes": size,
        "bytes_per_step_first_5_turns": round(first), "bytes_per_step_last_5_turns": round(last),
        "growth": round(last / first, 2),
        "asof_step_ms": round(await _time(lambda: app.asof(thread, step=mid)), 2),
        "asof_at_ms": round(await _time(lambda: app.asof(thread, at=moment)), 2),
        "history_s": history_s,
    }


async def big_database(app: Interlock, db: Path, checkpoints: int) -> dict[str, Any]:
    threads = 0
    while True:
        with sqlite3.connect(db) as conn:  # the bulk threads' own, the long thread aside
            total = conn.execute("SELECT count(*) FROM checkpoints WHERE thread_id LIKE "
                                 "'bulk-%'").fetchone()[0]
        if total >= checkpoints:
            break
        for _ in range(50):
            await app.run(MESSAGES[threads % len(MESSAGES)], thread_id=f"bulk-{threads}")
            threads += 1
    probe = f"bulk-{threads // 2}"
    history = await app.history(probe)
    middle = history[len(history) // 2]
    moment = datetime.fromisoformat(str(middle["created_at"]))
    return {
        "threads": threads, "checkpoints": int(total), "db_bytes": db.stat().st_size,
        "asof_step_ms": round(await _time(lambda: app.asof(probe, step=middle["step"])), 2),
        "asof_at_ms": round(await _time(lambda: app.asof(probe, at=moment)), 2),
    }


async def measure(steps: int, checkpoints: int, database_url: str | None = None
                  ) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="interlock-storage-") as tmp:
        settings = Settings(home=Path(tmp), database_url=database_url)
        async with open_interlock(settings) as app:
            if database_url:  # the long thread only: the many-threads figure is SQLite's
                return {"long_thread": await long_thread(app, database_url, steps)}
            db = settings.checkpoints_path
            long = await long_thread(app, db, steps)
            print(json.dumps({"long_thread": long}), file=sys.stderr, flush=True)
            return {"long_thread": long, "database": await big_database(app, db, checkpoints)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--checkpoints", type=int, default=10000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeat", type=int, default=REPEAT["n"], help="timings per query")
    parser.add_argument("--database-url", help="a postgresql:// URL: the long thread on "
                                               "Postgres (a database of its own: it is "
                                               "written to)")
    args = parser.parse_args()
    REPEAT["n"] = args.repeat
    figures = asyncio.run(measure(args.steps, args.checkpoints, args.database_url))
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    long, big = figures["long_thread"], figures.get("database")
    print("| figure | value |\n|---|---:|")
    print(f"| long thread: turns / checkpoints | {long['turns']} / {long['checkpoints']} |")
    print(f"| bytes per step, first 5 turns | {long['bytes_per_step_first_5_turns']:,} |")
    print(f"| bytes per step, last 5 turns | {long['bytes_per_step_last_5_turns']:,} |")
    print(f"| growth (last / first) | {long['growth']}x |")
    print(f"| long thread: total bytes | {long['total_bytes']:,} |")
    print(f"| long thread: asof --step (median ms) | {long['asof_step_ms']} |")
    print(f"| long thread: asof --at (median ms) | {long['asof_at_ms']} |")
    print(f"| long thread: full history (s) | {long['history_s']} |")
    if big is None:
        return 0
    print(f"| database: threads / checkpoints | {big['threads']:,} / {big['checkpoints']:,} |")
    print(f"| database: file bytes | {big['db_bytes']:,} |")
    print(f"| database: asof --step (median ms) | {big['asof_step_ms']} |")
    print(f"| database: asof --at (median ms) | {big['asof_at_ms']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
