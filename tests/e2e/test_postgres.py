"""Postgres as the configured backend: the effects journal and checkpoints shared by replicas.

The journal's own tests run here again on Postgres (imported: the `journal` fixture below
opens each on a schema of the test's own). Then what only a shared server can show: two
processes' journals racing under one limit, and connections killed while idle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from graphs.core.clock import Clock, FakeClock
from graphs.core.errors import ConfigError
from graphs.runner import open_interlock
from graphs.settings import Settings
from tests.unit.test_effects_journal import (  # noqa: F401 - collected here on Postgres
    Journal,
    proposal,
    test_a_proposal_keeps_its_first_decision,
    test_a_proposal_that_moved_nothing_is_decided_again,
    test_exposure_counts_what_may_still_move_within_the_window,
    test_racing_proposals_cannot_both_slip_under_a_limit,
    within,
)
from tools.effects import EffectJournal
from tools.toolbox import build_toolbox


@pytest.fixture
def journal(tmp_path: Path, postgres_url: str) -> Iterator[Journal]:
    """Opens the journal under test on Postgres (closed after the test)."""
    opened: list[EffectJournal] = []

    def make(clock: Clock) -> EffectJournal:
        opened.append(EffectJournal(tmp_path / "unused.db", clock, database_url=postgres_url))
        return opened[-1]

    yield make
    for each in opened:
        each.close()
    assert not (tmp_path / "unused.db").exists()  # nothing went to SQLite


def _kill_idle(url: str) -> int:
    """Terminate every other idle connection to the test database (a restart, a proxy)."""
    with psycopg.connect(url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
            "current_database() AND pid != pg_backend_pid() AND state = 'idle'").fetchall()
    return len(rows)


async def test_two_processes_racing_under_one_limit_are_serialised(journal: Journal) -> None:
    # Two journals are two pools, as two replicas have: the lock is the database's.
    replicas = [journal(FakeClock()), journal(FakeClock())]

    async def one(n: int) -> str:
        _, label = await replicas[n % 2].propose(
            proposal(f"k{n}", 3000), window_s=86400, duplicate_window_s=0,
            decide=lambda seen: within(seen, 3000))
        return label

    labels = await asyncio.gather(*(one(n) for n in range(10)))
    assert sorted(labels) == ["auto"] + ["escalate"] * 9


async def test_a_connection_killed_while_idle_is_replaced(journal: Journal,
                                                          postgres_url: str) -> None:
    opened = journal(FakeClock())
    await opened.propose(proposal("before", 100), window_s=60, duplicate_window_s=0,
                         decide=lambda seen: "auto")
    assert _kill_idle(postgres_url) >= 1
    assert await opened.entry("before") is not None
    await opened.finish("before", "executed", {"refund_id": "rf_1"})
    entry = await opened.entry("before")
    assert entry is not None and entry["outcome"] == "executed"


async def test_runs_survive_checkpoint_connections_killed_while_idle(
        settings: Settings, postgres_url: str) -> None:
    on_postgres = replace(settings, database_url=postgres_url)
    async with open_interlock(on_postgres, toolbox=build_toolbox(on_postgres)) as app:
        first = await app.run("Where is my order 1042?")
        assert first.status == "completed"
        assert _kill_idle(postgres_url) >= 1
        again = await app.run("What is your return policy?", thread_id=first.thread_id)
        assert again.status == "completed"
        steps = await app.history(first.thread_id)
        assert sum("output_guard" in s["nodes"] for s in steps) == 2
    assert not on_postgres.checkpoints_path.exists()  # nothing went to SQLite
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0] > 0


async def test_an_unreachable_database_is_a_config_error(settings: Settings) -> None:
    nowhere = replace(settings, database_url="postgresql://postgres@127.0.0.1:1/none")
    with pytest.raises(ConfigError) as raised:
        async with open_interlock(nowhere, toolbox=build_toolbox(nowhere)):
            pass
    assert raised.value.variable == "INTERLOCK_DATABASE_URL"
    assert "127.0.0.1:1/none" in str(raised.value)
