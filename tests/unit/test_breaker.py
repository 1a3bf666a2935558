from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pybreaker
import pytest

from graphs.core.clock import FakeClock
from tools.breaker import AsyncBreaker, BreakerOpen, TransitionListener, current_transitions

NAME = "dep"


class Boom(Exception):
    pass


class Harness:
    """An AsyncBreaker on a fake clock plus operations that count their invocations."""

    def __init__(self, *, fail_max: int = 3, reset_timeout: float = 30.0,
                 half_open_probes: int | None = None, exclude: list[Any] | None = None) -> None:
        self.listener = TransitionListener()
        self.clock = FakeClock()
        self.cb = pybreaker.CircuitBreaker(fail_max=fail_max, reset_timeout=reset_timeout,
                                           listeners=[self.listener], name=NAME,
                                           exclude=exclude or [])
        if half_open_probes is None:  # the default
            self.breaker = AsyncBreaker(self.cb, clock=self.clock)
        else:
            self.breaker = AsyncBreaker(self.cb, clock=self.clock,
                                        half_open_probes=half_open_probes)
        self.invocations = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.gate = asyncio.Event()

    async def ok(self) -> str:
        self.invocations += 1
        return "ok"

    async def fail(self, exc: BaseException | None = None) -> str:
        self.invocations += 1
        raise exc or Boom("down")

    async def blocked(self, outcome: Callable[[], Awaitable[str]] | None = None) -> str:
        self.invocations += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self.gate.wait()
        finally:
            self.in_flight -= 1
        if outcome is not None:
            return await outcome()
        return "released"

    async def trip(self, times: int) -> None:
        for _ in range(times):
            with pytest.raises(Boom):
                await self.breaker.call(self.fail)


async def settle(condition: Callable[[], bool], rounds: int = 200) -> None:
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


async def test_concurrent_calls_are_not_serialized() -> None:
    h = Harness()
    tasks = [asyncio.create_task(h.breaker.call(h.blocked)) for _ in range(5)]
    await settle(lambda: h.in_flight == 5)
    assert h.max_in_flight == 5
    assert not any(t.done() for t in tasks)
    h.gate.set()
    assert await asyncio.gather(*tasks) == ["released"] * 5
    assert h.breaker.state == "closed"


async def test_opens_after_fail_max_consecutive_failures() -> None:
    h = Harness(fail_max=3)
    await h.trip(2)
    assert h.breaker.state == "closed"
    assert await h.breaker.call(h.ok) == "ok"  # a success resets the count
    await h.trip(2)
    assert h.breaker.state == "closed"
    await h.trip(1)  # the third consecutive failure: the original error still surfaces
    assert h.breaker.state == "open"
    assert h.listener.log == [(NAME, "closed", "open")]
    assert h.invocations == 6


async def test_open_breaker_refuses_without_invoking() -> None:
    h = Harness(fail_max=2)
    await h.trip(2)
    before = h.invocations
    for _ in range(4):
        with pytest.raises(BreakerOpen) as caught:
            await h.breaker.call(h.ok)
        assert caught.value.state == "open"
        assert caught.value.name == NAME
    assert h.invocations == before
    h.clock.advance(29.9)
    with pytest.raises(BreakerOpen):
        await h.breaker.call(h.ok)
    assert h.invocations == before


async def test_reset_timeout_follows_the_fake_clock() -> None:
    h = Harness(fail_max=1, reset_timeout=30)
    await h.trip(1)
    h.clock.advance(30)
    assert await h.breaker.call(h.ok) == "ok"
    assert h.breaker.state == "closed"


@pytest.mark.parametrize("configured", [None, 2])
async def test_half_open_admits_only_the_probes(configured: int | None) -> None:
    h = Harness(fail_max=1, reset_timeout=10, half_open_probes=configured)
    probes = configured or 1  # one probe unless told otherwise
    await h.trip(1)
    h.invocations = 0
    h.clock.advance(10)
    tasks = [asyncio.create_task(h.breaker.call(h.blocked)) for _ in range(5)]
    await settle(lambda: sum(t.done() for t in tasks) == 5 - probes)
    assert h.invocations == probes
    refused = [t.exception() for t in tasks if t.done()]
    assert all(isinstance(e, BreakerOpen) and e.state == "half-open" for e in refused)
    assert h.breaker.state == "half-open"
    h.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results.count("released") == probes
    assert h.breaker.state == "closed"
    assert h.invocations == probes


async def test_successful_probe_closes() -> None:
    h = Harness(fail_max=2, reset_timeout=5)
    await h.trip(2)
    h.clock.advance(5)
    assert await h.breaker.call(h.ok) == "ok"
    assert h.breaker.state == "closed"
    assert h.listener.log == [(NAME, "closed", "open"), (NAME, "open", "half-open"),
                              (NAME, "half-open", "closed")]
    # closed again: a single failure does not reopen it (the count was reset)
    await h.trip(1)
    assert h.breaker.state == "closed"


async def test_failed_probe_reopens_for_another_timeout() -> None:
    h = Harness(fail_max=2, reset_timeout=5)
    await h.trip(2)
    h.clock.advance(5)
    await h.trip(1)  # the probe fails
    assert h.breaker.state == "open"
    assert h.listener.log == [(NAME, "closed", "open"), (NAME, "open", "half-open"),
                              (NAME, "half-open", "open")]
    invoked = h.invocations
    h.clock.advance(4)
    with pytest.raises(BreakerOpen):
        await h.breaker.call(h.ok)
    assert h.invocations == invoked
    h.clock.advance(1)
    assert await h.breaker.call(h.ok) == "ok"
    assert h.breaker.state == "closed"


async def test_transitions_reach_the_current_call_only() -> None:
    h = Harness(fail_max=1, reset_timeout=5)
    mine: list[tuple[str, str, str]] = []
    token = current_transitions.set(mine)
    try:
        with pytest.raises(Boom):
            await h.breaker.call(h.fail)
    finally:
        current_transitions.reset(token)
    assert mine == [(NAME, "closed", "open")]

    async def probe_in_own_context() -> list[tuple[str, str, str]]:
        sink: list[tuple[str, str, str]] = []
        current_transitions.set(sink)
        await h.breaker.call(h.ok)
        return sink

    h.clock.advance(5)
    other = await asyncio.create_task(probe_in_own_context())
    assert other == [(NAME, "open", "half-open"), (NAME, "half-open", "closed")]
    assert mine == [(NAME, "closed", "open")]
    assert current_transitions.get() is None
    assert h.listener.log == [(NAME, "closed", "open"), *other]


async def test_excluded_exception_is_not_a_failure() -> None:
    h = Harness(fail_max=2, exclude=[ValueError])
    for _ in range(5):
        with pytest.raises(ValueError):
            await h.breaker.call(lambda: h.fail(ValueError("business")))
    assert h.breaker.state == "closed"
    assert h.cb.fail_counter == 0
    assert h.invocations == 5
    # an excluded error between two failures breaks the run of consecutive failures
    await h.trip(1)
    with pytest.raises(ValueError):
        await h.breaker.call(lambda: h.fail(ValueError("business")))
    await h.trip(1)
    assert h.breaker.state == "closed"
    await h.trip(1)
    assert h.breaker.state == "open"


async def test_excluded_by_predicate() -> None:
    h = Harness(fail_max=1, exclude=[lambda exc: isinstance(exc, Boom) and "4xx" in str(exc)])
    with pytest.raises(Boom):
        await h.breaker.call(lambda: h.fail(Boom("4xx refused")))
    assert h.breaker.state == "closed"
    await h.trip(1)
    assert h.breaker.state == "open"


async def test_cancelled_call_is_not_a_failure() -> None:
    h = Harness(fail_max=1)
    task = asyncio.create_task(h.breaker.call(h.blocked))
    await settle(lambda: h.in_flight == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert h.breaker.state == "closed"
    assert h.cb.fail_counter == 0
    assert h.listener.log == []


async def test_cancelled_probe_frees_its_slot() -> None:
    h = Harness(fail_max=1, reset_timeout=5)
    await h.trip(1)
    h.clock.advance(5)
    task = asyncio.create_task(h.breaker.call(h.blocked))
    await settle(lambda: h.in_flight == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert h.breaker.state == "half-open"
    assert await h.breaker.call(h.ok) == "ok"  # the next caller may probe
    assert h.breaker.state == "closed"


def test_a_health_aware_breaker_trips_only_when_down_but_opens_when_told() -> None:
    from tools.breaker import HealthAwareBreaker

    cb = HealthAwareBreaker(fail_max=1, window=4, down_rate=0.75)
    for failed in (False, False, True):
        cb.recent.add(failed)
    assert cb.open() is False and cb.current_state == pybreaker.STATE_CLOSED  # degraded
    cb.recent.add(True)
    cb.recent.add(True)
    assert cb.recent.down and cb.open() is True and cb.current_state == pybreaker.STATE_OPEN
    cb.close()
    assert cb.force_open() is True and cb.current_state == pybreaker.STATE_OPEN
