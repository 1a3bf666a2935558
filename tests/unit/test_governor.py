from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from graphs.core.clock import FakeClock, iso
from graphs.core.state import Event
from tests.conftest import fast_settings
from tools.errors import DependencyError
from tools.governor import CallContext, Governor

DEP = "carrier"


def make_governor(tmp_path: Path, **policy: Any) -> tuple[Governor, FakeClock]:
    base = fast_settings(tmp_path)
    settings = base.with_policy(DEP, **policy)
    clock = FakeClock()
    return Governor(settings, clock=clock, rng=random.Random(0)), clock


def failure(*, retryable: bool = True, reason: str = "unavailable", status: int | None = 503,
            retry_after_s: float | None = None) -> DependencyError:
    return DependencyError(f"HTTP {status}", dependency=DEP, retryable=retryable,
                           status=status, retry_after_s=retry_after_s, reason=reason)


class Op:
    """An operation that plays a script of outcomes (the last one repeats) and counts calls."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script) or ["ok"]
        self.calls = 0
        self.limits: list[float] = []

    async def __call__(self, limit_s: float) -> Any:
        self.calls += 1
        self.limits.append(limit_s)
        outcome = self.script[min(self.calls, len(self.script)) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def kinds(events: list[Event]) -> list[str]:
    return [e["kind"] for e in events]


def of_kind(events: list[Event], kind: str) -> list[Event]:
    return [e for e in events if e["kind"] == kind]


async def test_success_on_first_attempt(tmp_path: Path) -> None:
    gov, clock = make_governor(tmp_path)
    op = Op({"value": 1})
    ctx = CallContext(step_id="s1")
    assert await gov.call(DEP, op, ctx, action="track") == {"value": 1}
    assert op.calls == 1
    assert op.limits == [gov.settings.policy(DEP).timeout]
    assert len(ctx.events) == 1
    event = ctx.events[0]
    assert (event["kind"], event["dependency"], event["step_id"]) == ("attempt", DEP, "s1")
    assert event["detail"]["outcome"] == "ok"
    assert event["detail"]["attempt"] == 1
    assert event["detail"]["action"] == "track"
    assert event["at"] == iso(clock.now())
    assert clock.sleeps == []


async def test_retryable_errors_are_retried_with_full_jitter(tmp_path: Path) -> None:
    base, cap = 0.1, 0.25
    gov, clock = make_governor(tmp_path, attempts=4, backoff_base=base, backoff_cap=cap)
    op = Op(failure(), failure(), failure(), "done")
    ctx = CallContext()
    assert await gov.call(DEP, op, ctx, action="track") == "done"
    assert op.calls == 4
    assert kinds(ctx.events) == ["attempt", "retry"] * 3 + ["attempt"]
    attempts = of_kind(ctx.events, "attempt")
    assert [e["detail"]["outcome"] for e in attempts] == ["error"] * 3 + ["ok"]
    assert [e["detail"]["attempt"] for e in attempts] == [1, 2, 3, 4]
    assert all(e["detail"]["reason"] == "unavailable" for e in attempts[:3])
    retries = of_kind(ctx.events, "retry")
    assert [e["detail"]["attempt"] for e in retries] == [2, 3, 4]
    assert len(clock.sleeps) == 3
    for n, (slept, retry) in enumerate(zip(clock.sleeps, retries, strict=True), start=1):
        assert 0 <= slept <= min(cap, base * 2 ** (n - 1))
        assert retry["detail"]["delay_s"] == pytest.approx(slept, abs=1e-3)


async def test_gives_up_after_the_configured_attempts(tmp_path: Path) -> None:
    gov, clock = make_governor(tmp_path, attempts=3)
    last = failure(reason="gateway_timeout", status=504)
    op = Op(failure(), failure(), last)
    ctx = CallContext()
    with pytest.raises(DependencyError) as caught:
        await gov.call(DEP, op, ctx, action="track")
    assert caught.value is last
    assert op.calls == 3
    assert len(clock.sleeps) == 2
    assert len(of_kind(ctx.events, "retry")) == 2


async def test_backoff_is_jittered_not_fixed(tmp_path: Path) -> None:
    base, cap = 0.2, 5.0
    gov, clock = make_governor(tmp_path, attempts=2, backoff_base=base, backoff_cap=cap,
                               retry_reserve=1000)
    for _ in range(40):
        await gov.call(DEP, Op(failure(), "ok"), CallContext(), action="track")
    assert len(clock.sleeps) == 40
    assert all(0 <= s <= base for s in clock.sleeps)
    # full jitter spreads delays over the whole range (no fixed or "equal jitter" floor)
    assert min(clock.sleeps) < base / 4
    assert max(clock.sleeps) > base * 3 / 4


async def test_retry_after_raises_the_delay(tmp_path: Path) -> None:
    gov, clock = make_governor(tmp_path, attempts=2)
    op = Op(failure(reason="throttled", status=429, retry_after_s=1.5), "ok")
    ctx = CallContext()
    assert await gov.call(DEP, op, ctx, action="track") == "ok"
    assert op.calls == 2
    assert len(clock.sleeps) == 1 and clock.sleeps[0] >= 1.5
    retry = of_kind(ctx.events, "retry")[0]
    assert retry["detail"]["delay_s"] >= 1.5
    assert retry["detail"]["after"] == "throttled"


async def test_non_retryable_errors_are_not_retried(tmp_path: Path) -> None:
    gov, clock = make_governor(tmp_path, attempts=5)
    refused = failure(retryable=False, reason="exceeds_refundable", status=422)
    op = Op(refused, "ok")
    ctx = CallContext()
    with pytest.raises(DependencyError) as caught:
        await gov.call(DEP, op, ctx, action="refund")
    assert caught.value is refused
    assert op.calls == 1
    assert clock.sleeps == []
    assert kinds(ctx.events) == ["attempt"]
    assert ctx.events[0]["detail"]["retryable"] is False
    assert ctx.events[0]["detail"]["status"] == 422


async def test_passed_deadline_never_calls(tmp_path: Path) -> None:
    gov, clock = make_governor(tmp_path)
    clock.advance(100)
    op = Op("ok")
    ctx = CallContext(deadline=clock.monotonic() - 1)
    with pytest.raises(DependencyError) as caught:
        await gov.call(DEP, op, ctx, action="track")
    assert caught.value.reason == "deadline"
    assert caught.value.retryable is False
    assert op.calls == 0
    assert kinds(ctx.events) == ["deadline"]
    # the same through the wall-clock constructor
    ctx2 = CallContext.until(clock.now() - timedelta(seconds=1), clock)
    with pytest.raises(DependencyError) as again:
        await gov.call(DEP, op, ctx2, action="track")
    assert again.value.reason == "deadline"
    assert op.calls == 0


async def test_attempt_timeout_is_cut_by_the_deadline(tmp_path: Path) -> None:
    gov, clock = make_governor(tmp_path, timeout=2.0)
    op = Op("ok")
    ctx = CallContext(deadline=clock.monotonic() + 0.5)
    assert await gov.call(DEP, op, ctx, action="track") == "ok"
    assert op.limits == [pytest.approx(0.5)]


async def test_retry_that_does_not_fit_the_deadline_is_not_made(tmp_path: Path) -> None:
    gov, clock = make_governor(tmp_path, attempts=3)
    throttled = failure(reason="throttled", status=429, retry_after_s=2.0)
    op = Op(throttled, "ok")
    ctx = CallContext(deadline=clock.monotonic() + 1.0)
    with pytest.raises(DependencyError) as caught:
        await gov.call(DEP, op, ctx, action="track")
    assert caught.value is throttled
    assert op.calls == 1
    assert clock.sleeps == []
    assert of_kind(ctx.events, "retry") == []
    deadline = of_kind(ctx.events, "deadline")
    assert len(deadline) == 1 and deadline[0]["detail"]["reason"] == "no_time_to_retry"


async def test_retry_budget_bounds_load_under_full_outage(tmp_path: Path) -> None:
    ratio, reserve, calls = 0.1, 2, 50
    gov, _ = make_governor(tmp_path, attempts=3, retry_ratio=ratio, retry_reserve=reserve,
                           fail_max=10_000)
    op = Op(failure())
    reasons: list[str] = []
    events: list[Event] = []
    for _ in range(calls):
        ctx = CallContext()
        with pytest.raises(DependencyError) as caught:
            await gov.call(DEP, op, ctx, action="track")
        reasons.append(caught.value.reason)
        events.extend(ctx.events)
    assert op.calls <= calls * (1 + ratio) + reserve
    assert op.calls > calls  # retries did happen while the budget lasted
    assert "retry_budget_exhausted" in reasons
    assert reasons.count("retry_budget_exhausted") >= calls // 2
    rejected = [e for e in of_kind(events, "rejected")
                if e["detail"]["reason"] == "retry_budget_exhausted"]
    assert len(rejected) == reasons.count("retry_budget_exhausted")


async def test_retry_budget_under_concurrent_outage(tmp_path: Path) -> None:
    ratio, reserve, calls = 0.1, 2, 50
    gov, _ = make_governor(tmp_path, attempts=3, retry_ratio=ratio, retry_reserve=reserve,
                           fail_max=10_000, max_concurrency=100)
    op = Op(failure())
    results = await asyncio.gather(
        *(gov.call(DEP, op, CallContext(), action="track") for _ in range(calls)),
        return_exceptions=True)
    assert all(isinstance(r, DependencyError) for r in results)
    assert op.calls <= calls * (1 + ratio) + reserve
    assert any(isinstance(r, DependencyError) and r.reason == "retry_budget_exhausted"
               for r in results)


async def test_bulkhead_rejects_a_third_concurrent_call(tmp_path: Path) -> None:
    gov, _ = make_governor(tmp_path, max_concurrency=2, bulkhead_wait=0.001)
    gate = asyncio.Event()
    entered = 0

    async def blocked(limit_s: float) -> str:
        nonlocal entered
        entered += 1
        await gate.wait()
        return "done"

    first = asyncio.create_task(gov.call(DEP, blocked, CallContext(), action="track"))
    second = asyncio.create_task(gov.call(DEP, blocked, CallContext(), action="track"))
    for _ in range(100):
        if entered == 2:
            break
        await asyncio.sleep(0)
    assert entered == 2
    ctx = CallContext()
    with pytest.raises(DependencyError) as caught:
        await gov.call(DEP, blocked, ctx, action="track")
    assert caught.value.reason == "bulkhead_full"
    assert entered == 2
    assert kinds(ctx.events) == ["rejected"]
    gate.set()
    assert await asyncio.gather(first, second) == ["done", "done"]
    # the slots are given back
    assert await gov.call(DEP, Op("again"), CallContext(), action="track") == "again"
    assert gov.bulkheads[DEP].in_use == 0


async def test_breaker_opens_and_stops_calls(tmp_path: Path) -> None:
    # A window of 6: with 3 attempts seen, all failed, the dependency counts as down.
    gov, clock = make_governor(tmp_path, attempts=1, fail_max=3, reset_timeout=30,
                               health_window=6)
    op = Op(failure())
    contexts = []
    for _ in range(3):
        ctx = CallContext()
        with pytest.raises(DependencyError) as caught:
            await gov.call(DEP, op, ctx, action="track")
        assert caught.value.reason == "unavailable"
        contexts.append(ctx)
    assert op.calls == 3
    assert of_kind(contexts[0].events, "breaker") == []
    opened = of_kind(contexts[2].events, "breaker")
    assert [(e["dependency"], e["detail"]["old"], e["detail"]["new"]) for e in opened] == [
        (DEP, "closed", "open")]
    ctx = CallContext()
    with pytest.raises(DependencyError) as refused:
        await gov.call(DEP, op, ctx, action="track")
    assert refused.value.reason == "breaker_open"
    assert op.calls == 3
    assert kinds(ctx.events) == ["rejected"]
    # other dependencies keep their own breakers
    assert await gov.call("payments", Op("fine"), CallContext(), action="refund") == "fine"
    # after the reset timeout a probe goes through and closes the breaker
    clock.advance(30)
    ctx = CallContext()
    assert await gov.call(DEP, Op("back"), ctx, action="track") == "back"
    moves = [(e["detail"]["old"], e["detail"]["new"]) for e in of_kind(ctx.events, "breaker")]
    assert moves == [("open", "half-open"), ("half-open", "closed")]


async def test_breaker_open_mid_call_stops_its_retries(tmp_path: Path) -> None:
    gov, _ = make_governor(tmp_path, attempts=5, fail_max=2, health_window=4)
    op = Op(failure())
    with pytest.raises(DependencyError) as caught:
        await gov.call(DEP, op, CallContext(), action="track")
    assert op.calls == 2
    assert caught.value.reason == "breaker_open"


async def test_refused_requests_do_not_trip_the_breaker(tmp_path: Path) -> None:
    gov, _ = make_governor(tmp_path, attempts=1, fail_max=2)
    op = Op(failure(retryable=False, reason="rejected", status=400))
    for _ in range(5):
        with pytest.raises(DependencyError) as caught:
            await gov.call(DEP, op, CallContext(), action="track")
        assert caught.value.reason == "rejected"
    assert op.calls == 5
    assert gov.breaker(DEP).state == "closed"


async def test_attempt_timeout(tmp_path: Path) -> None:
    gov, _ = make_governor(tmp_path, timeout=0.05, attempts=2)
    calls = 0

    async def slow(limit_s: float) -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)
        return "late"

    loop = asyncio.get_running_loop()
    started = loop.time()
    ctx = CallContext()
    with pytest.raises(DependencyError) as caught:
        await gov.call(DEP, slow, ctx, action="track")
    elapsed = loop.time() - started
    assert caught.value.reason == "timeout"
    assert caught.value.dependency == DEP
    assert calls == 2  # a timeout is retryable
    assert elapsed < 0.3
    assert [e["detail"]["reason"] for e in of_kind(ctx.events, "attempt")] == ["timeout"] * 2


async def test_transport_errors_are_retryable(tmp_path: Path) -> None:
    gov, _ = make_governor(tmp_path, attempts=2)
    op = Op(httpx.ConnectError("refused"), "ok")
    ctx = CallContext()
    assert await gov.call(DEP, op, ctx, action="track") == "ok"
    assert op.calls == 2
    assert of_kind(ctx.events, "attempt")[0]["detail"]["reason"] == "transport"


class Flaky:
    """A dependency failing a share of calls (503), drawn from a seeded generator; counts."""

    def __init__(self, rate: float, seed: int = 11) -> None:
        self.rate = rate
        self.rng = random.Random(seed)
        self.calls = 0

    async def __call__(self, limit_s: float) -> str:
        self.calls += 1
        if self.rng.random() < self.rate:
            raise failure()
        return "ok"


async def serve(gov: Governor, op: Flaky, n: int) -> list[str]:
    """`n` logical calls one after another: 'ok' or the reason each one failed."""
    outcomes = []
    for _ in range(n):
        try:
            outcomes.append(await gov.call(DEP, op, CallContext(), action="track"))
        except DependencyError as exc:
            outcomes.append(exc.reason)
    return outcomes


async def test_a_30_percent_flaky_dependency_is_retried_within_the_budget(
        tmp_path: Path) -> None:
    # A small floor, so the ratio is what lets the retries through.
    gov, _ = make_governor(tmp_path, attempts=4, fail_max=3, retry_reserve=2)
    op = Flaky(0.3)
    outcomes = await serve(gov, op, 300)
    policy = gov.settings.policy(DEP)
    assert outcomes.count("ok") >= 0.98 * 300, outcomes
    assert "retry_budget_exhausted" not in outcomes and "breaker_open" not in outcomes
    assert gov.breaker(DEP).state == "closed"  # runs of 3 failures happened: degraded, not down
    assert op.calls <= 300 * (1 + policy.degraded_retry_ratio) + policy.retry_reserve
    # The storm budget alone (Finagle's 20%) would have cut these requests off.
    storm, _ = make_governor(tmp_path / "storm", attempts=4, fail_max=3, retry_reserve=2,
                             degraded_below=0.0)
    cut = await serve(storm, Flaky(0.3), 300)
    assert cut.count("retry_budget_exhausted") > 30


async def test_a_dead_dependency_opens_the_breaker_and_drains_no_more_than_the_bound(
        tmp_path: Path) -> None:
    gov, clock = make_governor(tmp_path, attempts=3, fail_max=3, reset_timeout=30)
    policy = gov.settings.policy(DEP)
    healthy = await serve(gov, Flaky(0.0), 50)
    assert set(healthy) == {"ok"}
    down = Flaky(1.0)
    outcomes = await serve(gov, down, 200)
    assert gov.breaker(DEP).state == "open"
    # The breaker's window must fill with failures (down_rate of health_window) first.
    assert down.calls <= policy.health_window + policy.attempts
    assert outcomes.count("breaker_open") >= 200 - down.calls
    before = down.calls
    await serve(gov, down, 100)
    assert down.calls == before  # open: nothing more reaches it until the reset timeout


async def test_the_switch_between_degraded_and_down_follows_the_failure_rate(
        tmp_path: Path) -> None:
    gov, clock = make_governor(tmp_path, attempts=4, fail_max=3, reset_timeout=30,
                               retry_reserve=2)
    op = Flaky(0.3)
    assert (await serve(gov, op, 200)).count("ok") >= 195
    assert gov.breaker(DEP).state == "closed"
    op.rate = 1.0  # it goes down: the breaker opens within its window
    calls = op.calls
    assert "breaker_open" in await serve(gov, op, 50)
    policy = gov.settings.policy(DEP)
    assert op.calls - calls <= policy.health_window + policy.attempts
    op.rate = 0.0  # it comes back: after the reset timeout a probe closes the breaker
    clock.advance(31)
    assert (await serve(gov, op, 5)) == ["ok"] * 5
    assert gov.breaker(DEP).state == "closed"
    op.rate = 0.3  # and flaky again: retried, not cut off
    assert (await serve(gov, op, 200)).count("ok") >= 195
    assert gov.breaker(DEP).state == "closed"
