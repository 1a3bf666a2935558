"""The one retry layer: every dependency call goes through `Governor.call`, nothing else retries.

Per call: the request's deadline (no attempt starts that the deadline cannot fit), a bulkhead
slot, the dependency's circuit breaker, a per-attempt timeout, and retries with capped
exponential backoff and full jitter that honour `Retry-After`, paid for from a retry budget.
Each decision becomes an `Event` in the caller's `CallContext`, which workers hand back to the
graph state, so the checkpoint history answers "who retried what, and why".
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

import httpx

from graphs.core.clock import Clock, iso
from graphs.core.state import Event
from tools.breaker import (
    AsyncBreaker,
    BreakerOpen,
    HealthAwareBreaker,
    TransitionListener,
    current_transitions,
)
from tools.errors import DependencyError
from tools.policy import DependencyPolicy
from tools.resilience_store import BudgetStore, ResilienceStore, open_store
from tools.spans import span

__all__ = ["Bulkhead", "CallContext", "CallGovernor", "Governor", "PolicySource"]

T = TypeVar("T")

MIN_ATTEMPT_S = 0.05
"""An attempt is not started with less than this left before the deadline."""


@dataclass(slots=True, kw_only=True)
class CallContext:
    """Who is calling, how long is left, and where the call's events go."""

    step_id: str | None = None
    """The plan step making the call."""
    thread_id: str | None = None
    """The request's thread."""
    deadline: float | None = None
    """Deadline on the governor clock's monotonic scale (None: no deadline)."""
    events: list[Event] = field(default_factory=list)
    """Events recorded for this caller."""

    @classmethod
    def until(cls, deadline_at: datetime | None, clock: Clock, *, step_id: str | None = None,
              thread_id: str | None = None) -> CallContext:
        """A context whose deadline is the wall-clock moment `deadline_at`."""
        deadline = None
        if deadline_at is not None:
            deadline = clock.monotonic() + (deadline_at - clock.now()).total_seconds()
        return cls(step_id=step_id, thread_id=thread_id, deadline=deadline)

    def remaining(self, clock: Clock) -> float | None:
        """Seconds left before the deadline (None: unbounded)."""
        return None if self.deadline is None else self.deadline - clock.monotonic()


class CallGovernor(Protocol):
    """What a dependency client needs: one way to make a call (the governor, or a baseline)."""

    async def call(self, dependency: str, operation: Callable[[float], Awaitable[T]],
                   ctx: CallContext, *, action: str) -> T:
        """Call `operation(timeout_s)` under the caller's rules."""


class Bulkhead:
    """A concurrency cap; a call that cannot get a slot within a short wait is rejected."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                                    asyncio.Semaphore] = (
            weakref.WeakKeyDictionary())

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        semaphore = self._semaphores.get(loop)
        if semaphore is None:
            semaphore = self._semaphores[loop] = asyncio.Semaphore(self.limit)
        return semaphore

    @property
    def in_use(self) -> int:
        """Slots taken on the running loop."""
        semaphore = self._semaphore()
        return self.limit - semaphore._value

    async def acquire(self, wait: float) -> bool:
        """Take a slot, waiting at most `wait` seconds; False if none came free."""
        semaphore = self._semaphore()
        if semaphore.locked() and wait <= 0:
            return False
        try:
            async with asyncio.timeout(wait):
                await semaphore.acquire()
        except TimeoutError:
            return False
        return True

    def release(self) -> None:
        """Give a slot back."""
        self._semaphore().release()


def _attempt_meta(attempt: int, timeout: float, breaker: AsyncBreaker) -> dict[str, Any]:
    return {"attempt": attempt, "timeout_s": round(timeout, 3),
            "breaker_state": breaker.known_state}


class PolicySource(Protocol):
    """What the governor reads of the settings: each dependency's policy, and the store."""

    @property
    def resilience_store(self) -> str:
        """`memory`, or a redis:// URL shared by several processes."""

    def policy(self, dependency: str) -> DependencyPolicy:
        """The call policy of one registered dependency (ConfigError for an unknown one)."""


class Governor:
    """Breakers, budgets, bulkheads and retries for every dependency of one process.

    Any registered dependency may be called: its breaker, budget and bulkhead are made on its
    first call, from its policy.
    """

    def __init__(self, settings: PolicySource, *, clock: Clock | None = None,
                 rng: random.Random | None = None, store: ResilienceStore | None = None) -> None:
        self.settings = settings
        self.clock = clock or Clock()
        self.rng = rng or random.Random()
        # Opened now: an unreachable shared store is a start-up error, not a first-call one.
        self.store = store or open_store(settings.resilience_store)
        self.transitions = TransitionListener()
        self.breakers: dict[str, AsyncBreaker] = {}
        self.budgets: dict[str, BudgetStore] = {}
        self.bulkheads: dict[str, Bulkhead] = {}
        for dependency in getattr(settings, "dependencies", ()):
            self._ready(dependency.name)  # a shared store that cannot be read fails here

    def _ready(self, name: str) -> DependencyPolicy:
        """The dependency's policy, its breaker, budget and bulkhead made if not yet."""
        policy = self.settings.policy(name)
        if name not in self.breakers:
            breaker = HealthAwareBreaker(
                window=policy.health_window, down_rate=policy.down_rate,
                keep=policy.degraded_window,
                fail_max=policy.fail_max, reset_timeout=policy.reset_timeout,
                success_threshold=policy.success_threshold, name=name,
                listeners=[self.transitions], state_storage=self.store.breaker_storage(name),
                recent=self.store.failure_window(name, policy),
                # A refused request (4xx other than 408/429) says nothing about the dependency.
                exclude=[lambda exc: isinstance(exc, DependencyError) and not exc.retryable],
            )
            self.budgets[name] = self.store.budget(name, policy, self.clock)
            self.bulkheads[name] = Bulkhead(policy.max_concurrency)
            self.breakers[name] = AsyncBreaker(breaker, clock=self.clock,
                                               offload=self.store.remote)
        return policy

    def breaker(self, name: str) -> AsyncBreaker:
        """The dependency's circuit breaker."""
        self._ready(name)
        return self.breakers[name]

    def budget(self, name: str) -> BudgetStore:
        """The dependency's retry budget."""
        self._ready(name)
        return self.budgets[name]

    def _event(self, ctx: CallContext, kind: str, dependency: str, **detail: Any) -> None:
        ctx.events.append(Event(at=iso(self.clock.now()), kind=kind, dependency=dependency,
                                thread_id=ctx.thread_id, step_id=ctx.step_id, detail=detail))

    def _fail(self, ctx: CallContext, kind: str, dependency: str, reason: str, message: str,
              **detail: Any) -> DependencyError:
        self._event(ctx, kind, dependency, reason=reason, **detail)
        return DependencyError(message, dependency=dependency, retryable=False, reason=reason)

    async def call(self, dependency: str, operation: Callable[[float], Awaitable[T]],
                   ctx: CallContext, *, action: str) -> T:
        """Call `operation(timeout_s)` under every rule of `dependency`; raise DependencyError.

        `operation` must raise `DependencyError` for failures it recognises (with `retryable`
        set); timeouts and transport errors are classified here.
        """
        policy = self._ready(dependency)
        remaining = ctx.remaining(self.clock)
        with span(f"{dependency}.{action}", run_type="tool",
                  tags=["tool", f"dependency:{dependency}", f"thread:{ctx.thread_id or ''}"],
                  metadata=lambda: {
                      "dependency": dependency, "action": action, "plan_step": ctx.step_id,
                      "thread_id": ctx.thread_id,
                      "deadline_left_s": None if remaining is None else round(remaining, 3),
                      "breaker_state": self.breakers[dependency].known_state},
                  inputs={"action": action}) as traced:
            try:
                result = await self._call(dependency, policy, operation, ctx, action)
            except DependencyError as exc:
                traced.end(outcome="error", reason=exc.reason, retryable=exc.retryable)
                raise
            traced.end(outcome="ok")
            return result

    async def _call(self, dependency: str, policy: DependencyPolicy,
                    operation: Callable[[float], Awaitable[T]], ctx: CallContext,
                    action: str) -> T:
        breaker = self.breakers[dependency]
        budget = self.budgets[dependency]
        bulkhead = self.bulkheads[dependency]
        attempt = 0
        while True:
            attempt += 1
            remaining = ctx.remaining(self.clock)
            if remaining is not None and remaining < MIN_ATTEMPT_S:
                raise self._fail(ctx, "deadline", dependency, "deadline",
                                 "no time left before the request's deadline",
                                 action=action, attempt=attempt)
            timeout = policy.timeout if remaining is None else min(policy.timeout, remaining)
            if not await bulkhead.acquire(policy.bulkhead_wait):
                raise self._fail(ctx, "rejected", dependency, "bulkhead_full",
                                 f"all {policy.max_concurrency} slots are busy",
                                 action=action, attempt=attempt)
            transitions: list[tuple[str, str, str]] = []
            token = current_transitions.set(transitions)
            started = time.perf_counter()
            attempt_span = span(f"attempt {attempt}", run_type="tool",
                                tags=[f"dependency:{dependency}"],
                                metadata=functools.partial(_attempt_meta, attempt, timeout,
                                                           breaker))
            traced = attempt_span.__enter__()
            outcome = "ok"
            try:
                result = await breaker.call(functools.partial(
                    self._attempt, dependency, operation, timeout,
                    budget.deposit if attempt == 1 else None, self.store.remote))
            except BreakerOpen as exc:
                outcome = "rejected: breaker_open"
                raise self._fail(ctx, "rejected", dependency, "breaker_open",
                                 f"circuit breaker is {exc.state}", action=action,
                                 attempt=attempt) from None
            except DependencyError as exc:
                error = exc
                outcome = f"error: {exc.reason}"
            else:
                self._event(ctx, "attempt", dependency, action=action, attempt=attempt,
                            outcome="ok", ms=round((time.perf_counter() - started) * 1000, 2))
                return result
            finally:
                bulkhead.release()
                current_transitions.reset(token)
                for name, old, new in transitions:
                    self._event(ctx, "breaker", name, old=old, new=new, action=action)
                if traced.active:  # reading the breaker's state may cost a store read
                    traced.end(outcome=outcome, breaker_after=breaker.known_state,
                               transitions=transitions)
                attempt_span.__exit__(None, None, None)
            self._event(ctx, "attempt", dependency, action=action, attempt=attempt,
                        outcome="error", reason=error.reason, status=error.status,
                        retryable=error.retryable,
                        ms=round((time.perf_counter() - started) * 1000, 2))
            if not error.retryable:
                raise error
            if attempt >= policy.attempts:
                raise error
            delay = self.rng.uniform(0, min(policy.backoff_cap,
                                            policy.backoff_base * 2 ** (attempt - 1)))
            if error.retry_after_s is not None:
                delay = max(delay, error.retry_after_s)
            remaining = ctx.remaining(self.clock)
            if remaining is not None and remaining - delay < MIN_ATTEMPT_S:
                self._event(ctx, "deadline", dependency, reason="no_time_to_retry",
                            action=action, attempt=attempt, delay_s=round(delay, 3))
                raise error
            # What the failures say: a dependency failing a minority of recent attempts is
            # degraded, and retries serve its requests; one failing most of them is not
            # helped by more load, and gets the storm budget (its breaker opens at down_rate).
            failing = await breaker.afailure_rate(policy.degraded_window)
            ratio = (policy.degraded_retry_ratio if failing < policy.degraded_below
                     else policy.retry_ratio)
            withdrawn = (await asyncio.to_thread(budget.try_withdraw, ratio)
                         if self.store.remote else budget.try_withdraw(ratio))
            if not withdrawn:
                self._event(ctx, "rejected", dependency, reason="retry_budget_exhausted",
                            action=action, attempt=attempt, failure_rate=round(failing, 2))
                raise DependencyError(f"retry budget exhausted after: {error.message}",
                                      dependency=dependency, retryable=False,
                                      status=error.status, reason="retry_budget_exhausted")
            self._event(ctx, "retry", dependency, action=action, attempt=attempt + 1,
                        delay_s=round(delay, 3), after=error.reason)
            await self.clock.sleep(delay)

    async def _attempt(self, dependency: str, operation: Callable[[float], Awaitable[T]],
                       limit_s: float, on_start: Callable[[], None] | None,
                       offload: bool = False) -> T:
        if on_start is not None:
            # A first attempt really goes out: it earns the retry budget its share.
            if offload:
                await asyncio.to_thread(on_start)
            else:
                on_start()
        try:
            async with asyncio.timeout(limit_s):
                return await operation(limit_s)
        except (TimeoutError, httpx.TimeoutException):
            raise DependencyError(f"no answer within {limit_s:.2f}s", dependency=dependency,
                                  retryable=True, reason="timeout") from None
        except httpx.TransportError as exc:
            raise DependencyError(f"transport error: {type(exc).__name__}",
                                  dependency=dependency, retryable=True,
                                  reason="transport") from None
