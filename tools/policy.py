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
    """Consecutive failures that open the breaker."""
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
    retry_ratio: float = 0.1
    """Retries may add at most this share of first attempts (the retry budget)."""
    retry_reserve: int = 10
    """Retries allowed per window on top of the ratio."""
    retry_window: float = 10.0
    """Seconds over which the retry budget is counted."""
