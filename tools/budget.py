"""Retry budget per dependency, in the manner of Finagle's `RetryBudget` and gRPC throttling.

Within a sliding window, retries may add at most `ratio` of the first attempts plus a small
`reserve`; once spent, a call that wants to retry fails fast instead. Under a full outage the
calls reaching a dependency stay within `requests x (1 + ratio) + reserve`.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

from graphs.core.clock import Clock

__all__ = ["BudgetSnapshot", "RetryBudget"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetSnapshot:
    """The budget's counts within the current window."""

    requests: int
    """First attempts counted."""
    retries: int
    """Retries spent."""
    allowed: int
    """Retries the window allows in all at the budget's own share (`floor(requests x ratio) +
    reserve`); the governor grants more while a dependency is only degraded."""


class RetryBudget:
    """A sliding-window retry budget (thread-safe; time from an injectable clock)."""

    def __init__(self, *, ratio: float, reserve: int, window_s: float,
                 clock: Clock | None = None) -> None:
        self.ratio = ratio
        self.reserve = reserve
        self.window_s = window_s
        self._clock = clock or Clock()
        self._requests: deque[float] = deque()
        self._retries: deque[float] = deque()
        self._lock = threading.Lock()

    def _trim(self, now: float) -> None:
        horizon = now - self.window_s
        for times in (self._requests, self._retries):
            while times and times[0] <= horizon:
                times.popleft()

    def deposit(self) -> None:
        """Count one first attempt."""
        with self._lock:
            now = self._clock.monotonic()
            self._trim(now)
            self._requests.append(now)

    def try_withdraw(self, ratio: float | None = None) -> bool:
        """Spend one retry if the budget allows it; False means: do not retry.

        `ratio` replaces the budget's share for this decision (the governor's, by how the
        dependency is failing).
        """
        with self._lock:
            now = self._clock.monotonic()
            self._trim(now)
            if len(self._retries) >= self._allowed(ratio):
                return False
            self._retries.append(now)
            return True

    def _allowed(self, ratio: float | None = None) -> int:
        share = self.ratio if ratio is None else ratio
        return math.floor(len(self._requests) * share + 1e-9) + self.reserve

    def snapshot(self) -> BudgetSnapshot:
        """Counts in the current window."""
        with self._lock:
            self._trim(self._clock.monotonic())
            return BudgetSnapshot(requests=len(self._requests), retries=len(self._retries),
                                  allowed=self._allowed())
