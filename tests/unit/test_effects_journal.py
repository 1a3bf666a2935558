"""The effects journal as the ledger of cumulative limits: atomic, per subject and principal.

Here on SQLite; tests/e2e/test_postgres.py runs the same tests on Postgres (`journal` there
opens one on a schema of the test's own).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from graphs.core.clock import Clock, FakeClock
from tools.effects import EffectJournal, Exposure, Proposal

Journal = Callable[[Clock], EffectJournal]


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    """Opens the journal under test on a clock."""
    return lambda clock: EffectJournal(tmp_path / "effects.db", clock)

LIMIT = 5000


def proposal(key: str, amount: int, *, order: int = 1014, customer: int = 9) -> Proposal:
    return Proposal(key=key, dependency="payments", effect_id=f"fx-{key}",
                    subject=f"order:{order}", principal=f"customer:{customer}",
                    impact_cents=amount, request={"amount_cents": amount})


def within(exposure: Exposure, amount: int) -> str:
    return "auto" if exposure.subject_cents + amount <= LIMIT else "escalate"


async def test_racing_proposals_cannot_both_slip_under_a_limit(journal: Journal) -> None:
    opened = journal(FakeClock())

    async def one(n: int) -> str:
        _, label = await opened.propose(proposal(f"k{n}", 5000), window_s=86400,
                                        duplicate_window_s=0,
                                        decide=lambda seen: within(seen, 5000))
        return label

    labels = await asyncio.gather(*(one(n) for n in range(8)))
    assert sorted(labels) == ["auto"] + ["escalate"] * 7


async def test_exposure_counts_what_may_still_move_within_the_window(journal: Journal) -> None:
    clock = FakeClock()
    opened = journal(clock)
    decide = lambda seen: "auto"  # noqa: E731
    await opened.propose(proposal("paid", 2000), window_s=86400, duplicate_window_s=3600,
                          decide=decide)
    await opened.finish("paid", "executed", {"refund_id": "rf_1"})
    await opened.propose(proposal("rejected", 3000), window_s=86400, duplicate_window_s=3600,
                          decide=decide)
    await opened.finish("rejected", "rejected")
    await opened.propose(proposal("other-order", 1500, order=1012), window_s=86400,
                          duplicate_window_s=3600, decide=decide)
    seen, _ = await opened.propose(proposal("new", 2000), window_s=86400,
                                    duplicate_window_s=3600, decide=decide)
    assert (seen.subject_cents, seen.principal_cents) == (2000, 3500)
    assert [d["key"] for d in seen.duplicates] == ["paid"]
    assert seen.known_results == ["rf_1"]
    clock.advance(2 * 86400)  # out of the window: nothing counts any more
    later, _ = await opened.propose(proposal("later", 2000), window_s=86400,
                                     duplicate_window_s=3600, decide=decide)
    assert (later.subject_cents, later.principal_cents, later.duplicates) == (0, 0, [])


async def test_a_proposal_keeps_its_first_decision(journal: Journal) -> None:
    opened = journal(FakeClock())
    _, first = await opened.propose(proposal("k", 100), window_s=60, duplicate_window_s=0,
                                     decide=lambda seen: "escalate")
    _, again = await opened.propose(proposal("k", 100), window_s=60, duplicate_window_s=0,
                                     decide=lambda seen: "auto")
    assert (first, again) == ("escalate", "escalate")
    assert await opened.begin("k", dependency="payments", request={}) == 0
    effect = await opened.effect("fx-k")
    assert effect is not None and effect["key"] == "k" and effect["attempts"] == 1


async def test_a_journal_from_before_proposals_gains_the_new_columns(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "effects.db"
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE effects (key TEXT PRIMARY KEY, dependency TEXT NOT NULL, "
                    "thread_id TEXT, step_id TEXT, request TEXT NOT NULL, attempts INTEGER NOT "
                    "NULL DEFAULT 0, first_attempt_at TEXT, last_attempt_at TEXT, outcome TEXT, "
                    "outcome_at TEXT, result TEXT)")
        old.execute("INSERT INTO effects (key, dependency, request, attempts) VALUES "
                    "('old', 'payments', '{}', 1)")
    journal = EffectJournal(path, FakeClock())
    assert await journal.attempted("old") == {}
    _, label = await journal.propose(proposal("old", 100), window_s=60, duplicate_window_s=0,
                                     decide=lambda seen: "auto")
    assert label == "auto"


async def test_a_proposal_that_moved_nothing_is_decided_again(journal: Journal) -> None:
    opened = journal(FakeClock())

    async def propose(key: str) -> tuple[Exposure, str]:
        return await opened.propose(proposal(key, 4000), window_s=86400, duplicate_window_s=0,
                                     decide=lambda seen: within(seen, 4000))

    assert (await propose("a"))[1] == "auto"
    await opened.finish("a", "failed")  # the payment never went out
    assert (await propose("b"))[1] == "auto"
    await opened.finish("b", "executed", {"refund_id": "rf_b"})
    seen, label = await propose("a")  # "a" is tried again: it is weighed again
    assert (seen.subject_cents, label) == (4000, "escalate")
    entry = await opened.entry("a")
    assert entry is not None and entry["outcome"] is None  # counted again while it waits
