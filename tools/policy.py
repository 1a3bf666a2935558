"""How the control plane calls a dependency (its policy) and what a simulator of it injects."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DependencyPolicy", "FaultSpec"]


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultSpec:
    """Faults a simulator injects (`INTERLOCK_FAULTS_<DEP>="fail=1.0,latency=0.5"`)."""

    fail: float = 0.0
    """Share of calls answered with 503 (0..1)."""
    latency: float = 0.0
    """Seconds added before every answer."""
    throttle: float = 0.0
    """Share of calls answered with 429 and `Retry-After`."""
    retry_after: float = 1.0
    """Seconds named in `Retry-After` when throttling."""
    lose: float = 0.0
    """Share of calls whose effect happens but whose answer is lost (a 504 after the effect)."""
    seed: int = 7
    """Seed of the simulator's random choices, so fault runs are repeatable."""

    @property
    def active(self) -> bool:
        """Whether any fault is configured."""
        return bool(self.fail or self.latency or self.throttle or self.lose)


@dataclass(frozen=True, slots=True, kw_only=True)
class DependencyPolicy:
    """How one dependency is called (`INTERLOCK_DEP_<DEP>="timeout=2,fail_max=5"`)."""

    timeout: float
    """Seconds one attempt may take (cut further by the request's deadline)."""
    attempts: int = 3
    """Most attempts of one logical call, the first included."""
    fail_max: int = 5
    """Consecutive failures that open the breaker, once the dependency is down (`down_rate`)."""
    down_rate: float = 0.9
    """Share of the last `health_window` attempts failing that makes the dependency down
    (nearly every call fails), not merely degraded: only then do `fail_max` failures in a row
    open the breaker. A dependency failing 30% or even 50% of calls has runs of five or ten
    failures now and then; it is retried within the budget instead of being cut off for
    `reset_timeout`, which would only put the same work off until later."""
    health_window: int = 30
    """Attempts the breaker's failure rate is counted over (half of them at least before it
    says anything): 27 of 30 failing is one chance in 250,000 for a 50%-flaky dependency, and
    a healthy one that goes down is cut off within 27 attempts."""
    reset_timeout: float = 30.0
    """Seconds an open breaker waits before letting a probe through."""
    success_threshold: int = 1
    """Successful probes that close a half-open breaker."""
    max_concurrency: int = 16
    """Calls in flight at once (the bulkhead)."""
    bulkhead_wait: float = 0.05
    """Seconds a call may wait for a bulkhead slot before it is rejected."""
    backoff_base: float = 0.1
    """First retry's backoff cap, in seconds; doubles per attempt (full jitter)."""
    backoff_cap: float = 2.0
    """Largest backoff, in seconds."""
    retry_ratio: float = 0.2
    """Retries may add at most this share of first attempts once most recent attempts fail
    (`degraded_below` or more): the retry budget against storms, Finagle's and Envoy's 20%."""
    degraded_retry_ratio: float = 1.5
    """The budget's share while fewer than `degraded_below` of recent attempts fail: what a
    dependency failing up to 60% of calls needs for its requests to be served (retries per
    first attempt: 0.11 at 10% failures, 0.43 at 30%, 1 at 50%, 1.5 at 60%)."""
    degraded_below: float = 0.7
    """Failure rate of the last `degraded_window` attempts under which a dependency counts as
    degraded (retries recover its requests) rather than failing (retries would flood it)."""
    degraded_window: int = 100
    """Attempts that rate is counted over (more than the breaker's window: steadier)."""
    retry_reserve: int = 100
    """Retries allowed per window on top of the ratio: the floor that lets a quiet dependency's
    callers retry (Finagle's 10 retries per second over its 10 s window)."""
    retry_window: float = 10.0
    """Seconds over which the retry budget is counted."""
