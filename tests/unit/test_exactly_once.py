"""Exactly-once effects: what counts as unknown, and when the dependency is asked first."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphs.core.clock import FakeClock, iso
from graphs.core.state import Event
from tools.effects import EffectJournal
from tools.errors import DependencyError
from tools.exactly_once import perform
from tools.governor import CallContext

KEY = "il_test"


def attempt_event(clock: FakeClock, *, status: int | None, reason: str) -> Event:
    return Event(at=iso(clock.now()), kind="attempt", dependency="payments", thread_id=None,
                 step_id="t1.s1", detail={"action": "refund", "attempt": 1, "outcome": "error",
                                          "reason": reason, "status": status,
                                          "retryable": True})


async def once(journal: EffectJournal, clock: FakeClock, asked: list[int], *,
               status: int | None, reason: str) -> bool:
    """One attempt at the effect that fails as told; whether its outcome is unknown."""
    ctx = CallContext(step_id="t1.s1")

    async def send() -> str:
        ctx.events.append(attempt_event(clock, status=status, reason=reason))
        raise DependencyError(f"HTTP {status}", dependency="payments", retryable=True,
                              status=status, reason=reason)

    async def ask(earlier: int) -> None:
        asked.append(earlier)

    outcome = await perform(journal, KEY, dependency="payments", action="refund",
                            terms={"amount_cents": 100}, ctx=ctx, send=send, ask=ask)
    assert outcome.error is not None
    await journal.finish(KEY, "pending" if outcome.unknown else "failed")
    return outcome.unknown


@pytest.mark.parametrize(("status", "reason", "unknown"), [
    (503, "unavailable", False), (429, "throttled", False), (408, "unavailable", False),
    (503, "upstream_unavailable", True),  # a proxy's 503, not the service's
    (500, "unavailable", True), (502, "unavailable", True), (504, "gateway_timeout", True),
    (None, "timeout", True), (None, "transport", True),
])
async def test_only_an_answer_that_may_hide_the_effect_leaves_it_unknown(
        tmp_path: Path, status: int | None, reason: str, unknown: bool) -> None:
    clock = FakeClock()
    journal = EffectJournal(tmp_path / "effects.db", clock)
    asked: list[int] = []
    assert await once(journal, clock, asked, status=status, reason=reason) is unknown
    # The next attempt asks first only when this one's outcome is unknown.
    await once(journal, clock, asked, status=503, reason="unavailable")
    assert asked == ([1] if unknown else [])


async def test_an_attempt_noted_but_never_finished_is_asked_about(tmp_path: Path) -> None:
    clock = FakeClock()
    journal = EffectJournal(tmp_path / "effects.db", clock)
    ctx = CallContext(step_id="t1.s1")
    await journal.begin(KEY, dependency="payments", request={"amount_cents": 100}, ctx=ctx)
    # ... the process died here: no outcome was written.
    asked: list[int] = []
    assert await once(journal, clock, asked, status=503, reason="unavailable") is True
    assert asked == [1]


async def test_a_proposal_decided_again_keeps_what_the_last_attempt_did(
        tmp_path: Path) -> None:
    from tools.effects import Proposal

    clock = FakeClock()
    journal = EffectJournal(tmp_path / "effects.db", clock)
    noted = Proposal(key=KEY, dependency="payments", effect_id="fx", subject="order:1",
                     principal="customer:1", impact_cents=100, request={"amount_cents": 100})

    async def propose() -> None:
        await journal.propose(noted, window_s=86400, duplicate_window_s=0,
                              decide=lambda seen: "auto")

    asked: list[int] = []
    await propose()
    assert await once(journal, clock, asked, status=503, reason="unavailable") is False
    await propose()  # a re-run of the step: the gate decides again, which clears `outcome`
    assert await once(journal, clock, asked, status=503, reason="unavailable") is False
    assert asked == []  # the attempt before moved nothing: no question
    await propose()
    assert await once(journal, clock, asked, status=None, reason="timeout") is True
    await propose()
    assert await once(journal, clock, asked, status=503, reason="unavailable") is True
    assert asked == [3]  # after a timeout it asks, and what follows stays unknown
