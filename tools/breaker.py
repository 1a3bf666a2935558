"""A thin asyncio wrapper around pybreaker that does not serialize calls.

pybreaker's `CircuitBreaker.call()` holds one `threading.RLock` for the whole call and has no
asyncio support (only Tornado's). Awaiting a dependency inside that lock would let one request
at a time reach it. This wrapper takes the lock only around pybreaker's own bookkeeping (the
state's admission check before the call, and `_handle_error` / `_handle_success` after it), so
concurrent calls proceed while pybreaker's state objects, storage and listeners stay in charge
of every transition. What it adds: a bound on probes in flight while half-open (pybreaker lets
every caller through then), an injectable clock for the open -> half-open timeout, and a trip
that tells a degraded dependency from a down one (`HealthAwareBreaker`): pybreaker counts
failures in a row, which a dependency failing 30% of calls produces by chance every few hundred
calls; opening then would cut off requests that retries would have served. So `fail_max` in a
row opens the breaker only while most recent attempts failed (`down_rate` of the last
`window`), as Resilience4j's failure-rate window does.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import timedelta
from typing import Any, Protocol, TypeVar

import pybreaker

from graphs.core.clock import Clock

__all__ = [
    "AsyncBreaker",
    "BreakerOpen",
    "FailureWindow",
    "HealthAwareBreaker",
    "TransitionListener",
    "Window",
    "current_transitions",
]

T = TypeVar("T")

current_transitions: ContextVar[list[tuple[str, str, str]] | None] = ContextVar(
    "interlock_breaker_transitions", default=None)
"""Where transitions caused by the current task's call are reported (name, from, to)."""


class BreakerOpen(Exception):
    """The breaker refused the call without reaching the dependency."""

    def __init__(self, name: str, state: str) -> None:
        super().__init__(f"circuit breaker {name!r} is {state}")
        self.name = name
        self.state = state


class Window(Protocol):
    """The outcomes of a dependency's last attempts: in this process, or shared (Redis)."""

    size: int
    """How many attempts `down` judges."""

    def add(self, failed: bool) -> None:
        """Count one attempt's outcome."""

    def rate(self, last: int | None = None) -> float:
        """Share of the last `last` attempts (default: `size`) that failed; 0 with none."""

    @property
    def down(self) -> bool:
        """Whether the dependency looks down (most recent attempts failed)."""


class FailureWindow:
    """The outcomes of the last attempts, and what they say (thread-safe).

    `down` judges the last `size` (the breaker's window); `rate(last=n)` any span up to
    `keep` (the governor weighs retries over a longer, steadier one).
    """

    def __init__(self, size: int, down_rate: float, *, keep: int | None = None) -> None:
        self.size = size
        self.down_rate = down_rate
        self._failed: deque[bool] = deque(maxlen=max(size, keep or size))
        self._lock = threading.Lock()

    def add(self, failed: bool) -> None:
        """Count one attempt's outcome."""
        with self._lock:
            self._failed.append(failed)

    def rate(self, last: int | None = None) -> float:
        """Share of the last `last` attempts (default: the window) that failed; 0 with none."""
        with self._lock:
            n = min(last or self.size, len(self._failed))
            failed = sum(itertools.islice(reversed(self._failed), n))
        return failed / n if n else 0.0

    @property
    def down(self) -> bool:
        """Whether at least `down_rate` of the last `size` attempts failed.

        Fewer than half of `size` counted say nothing yet: three or five failures among the
        first few attempts of a 30%-flaky dependency are common, ten in a row are not.
        """
        with self._lock:
            enough = len(self._failed) >= max(1, self.size // 2)
        return enough and self.rate() >= self.down_rate


class HealthAwareBreaker(pybreaker.CircuitBreaker):
    """pybreaker's breaker whose trip from closed also needs the dependency to look down.

    Everything else is pybreaker's: the consecutive-failure counter (`fail_max`), its storage,
    listeners, exclusions, and a failed half-open probe reopening it at once.
    """

    def __init__(self, *args: Any, window: int = 30, down_rate: float = 0.9,
                 keep: int | None = None, recent: Window | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recent: Window = recent or FailureWindow(window, down_rate, keep=keep)

    def open(self) -> bool:
        """Open, unless this is a trip from closed while the dependency is merely degraded.

        pybreaker's closed state calls this when `fail_max` failures came in a row; an
        operator who means to open it whatever the failures say calls `force_open`.
        """
        if self._state_storage.state == pybreaker.STATE_CLOSED and not self.recent.down:
            return False  # pybreaker then re-raises the call's own error: no trip
        return bool(super().open())

    def force_open(self) -> bool:
        """Open now (pybreaker's `open`, without the failure-rate check)."""
        return bool(super().open())


class TransitionListener(pybreaker.CircuitBreakerListener):
    """Records every state change: into the current call's list, and into a process-wide log."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, str]] = []

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        """Called by pybreaker on each transition."""
        old = old_state.name if old_state is not None else "none"
        record = (str(cb.name), str(old), str(new_state.name))
        self.log.append(record)
        if (sink := current_transitions.get()) is not None:
            sink.append(record)


class AsyncBreaker:
    """Guards awaitable calls with a pybreaker `CircuitBreaker` without holding its lock across.

    With `offload`, pybreaker's bookkeeping runs in a worker thread: its storage is then a
    shared one (Redis) whose every read is a network round trip, kept off the event loop.
    """

    def __init__(self, breaker: pybreaker.CircuitBreaker, *, clock: Clock | None = None,
                 half_open_probes: int = 1, offload: bool = False) -> None:
        self.breaker = breaker
        self.clock = clock or Clock()
        self.half_open_probes = half_open_probes
        self.offload = offload
        self._probes_in_flight = 0

    @property
    def name(self) -> str:
        """The breaker's (dependency's) name."""
        return str(self.breaker.name)

    @property
    def state(self) -> str:
        """closed, open or half-open, as pybreaker's storage says (a read of a shared store)."""
        return str(self.breaker.current_state)

    @property
    def known_state(self) -> str:
        """The state as this process last saw it (no read: for spans, on the event loop)."""
        return str(self.breaker._state.name) if self.offload else self.state

    def failure_rate(self, last: int | None = None) -> float:
        """Share of the last `last` attempts that failed (0 for a breaker keeping no window)."""
        recent = getattr(self.breaker, "recent", None)
        return float(recent.rate(last)) if recent is not None else 0.0

    async def afailure_rate(self, last: int | None = None) -> float:
        """`failure_rate`, off the event loop when the window is shared."""
        if self.offload:
            return await asyncio.to_thread(self.failure_rate, last)
        return self.failure_rate(last)

    def _admit(self) -> str:
        """Decide under pybreaker's lock whether a call may start; return the state admitting it."""
        cb = self.breaker
        with cb._lock:
            state = cb.state  # refreshes the cached state from storage, notifying listeners
            if state.name == pybreaker.STATE_OPEN:
                opened_at = cb._state_storage.opened_at
                if opened_at and self.clock.now() < opened_at + timedelta(
                        seconds=cb.reset_timeout):
                    raise BreakerOpen(self.name, pybreaker.STATE_OPEN)
                cb.half_open()
                state = cb.state
            if state.name == pybreaker.STATE_HALF_OPEN:
                if self._probes_in_flight >= self.half_open_probes:
                    raise BreakerOpen(self.name, pybreaker.STATE_HALF_OPEN)
                self._probes_in_flight += 1
            for listener in cb.listeners:
                listener.before_call(cb, self.call)
            return str(state.name)

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run `operation` if the breaker admits it, and report its outcome to pybreaker."""
        admitted = await asyncio.to_thread(self._admit) if self.offload else self._admit()
        try:
            result = await operation()
        except BaseException as exc:
            if self.offload and not isinstance(exc, asyncio.CancelledError):
                await asyncio.to_thread(self._settle, admitted, exc)
            else:  # a cancelled task may not await again: settle in place
                self._settle(admitted, exc)
            raise
        if self.offload:
            await asyncio.to_thread(self._settle, admitted, None)
        else:
            self._settle(admitted, None)
        return result

    def _settle(self, admitted: str, exc: BaseException | None) -> None:
        cb = self.breaker
        with cb._lock:
            if admitted == pybreaker.STATE_HALF_OPEN:
                self._probes_in_flight -= 1
            if isinstance(exc, asyncio.CancelledError):
                return  # the caller gave up; says nothing about the dependency
            if isinstance(cb, HealthAwareBreaker):
                cb.recent.add(exc is not None and cb.is_system_error(exc))
            state = cb.state
            if state.name != admitted:
                # Admitted under another state (a call that started while closed and ends
                # while half-open is not the probe): its outcome must not decide this state.
                return
            if exc is None:
                state._handle_success()
                return
            was_open = state.name == pybreaker.STATE_OPEN
            try:
                # pybreaker's own rules: excluded exceptions count as success, system errors
                # count towards fail_max, a failed half-open probe reopens the breaker.
                state._handle_error(exc, reraise=False)
            except BaseException:
                pass  # pybreaker raises to signal a trip; our caller re-raises `exc`
            if not was_open and cb.current_state == pybreaker.STATE_OPEN:
                # Stamp the opening with our clock so the reset timeout follows it.
                cb._state_storage.opened_at = self.clock.now()
