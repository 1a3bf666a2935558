"""Fault injection for the simulators: failures, latency, throttling and lost answers."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import httpx

from graphs.core.clock import Clock
from tools.policy import FaultSpec

__all__ = ["FaultInjector", "SimulatorStats"]


@dataclass(slots=True)
class SimulatorStats:
    """What a simulator received and answered, for tests and the chaos harness."""

    calls: int = 0
    """Requests received."""
    statuses: Counter[int] = field(default_factory=Counter)
    """Answers by HTTP status."""
    in_flight: int = 0
    """Requests being handled right now."""
    max_in_flight: int = 0
    """Most requests handled at once."""


class FaultInjector:
    """Decides, per request, whether to slow down, throttle, fail or lose the answer."""

    def __init__(self, spec: FaultSpec | None = None, clock: Clock | None = None) -> None:
        self._clock = clock or Clock()
        self.set(spec or FaultSpec())

    def set(self, spec: FaultSpec) -> None:
        """Replace the faults (tests and the chaos harness change them at run time)."""
        self.spec = spec
        self._rng = random.Random(spec.seed)

    async def before(self) -> httpx.Response | None:
        """Apply latency; return a throttling or failure answer, or None to handle normally."""
        spec = self.spec
        if spec.latency:
            await self._clock.sleep(spec.latency)
        if spec.throttle and self._rng.random() < spec.throttle:
            return httpx.Response(429, headers={"Retry-After": f"{spec.retry_after:g}"},
                                  json={"error": "throttled"})
        if spec.fail and self._rng.random() < spec.fail:
            return httpx.Response(503, json={"error": "unavailable"})
        return None

    def lose_answer(self) -> bool:
        """Whether the answer to a request whose effect already happened gets lost."""
        return bool(self.spec.lose) and self._rng.random() < self.spec.lose
