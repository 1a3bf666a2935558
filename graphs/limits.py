"""Per-actor admission at the server's edge: token buckets for rates, counters for runs in flight.

Each actor (an API key's identity) has two buckets, one for runs started and one for requests
of any kind, and a count of its runs in flight (synchronous ones while their request is open,
background ones until the server says they ended). A request over a limit is refused with the
seconds after which it may succeed: the server answers 429 with `Retry-After`, and retrying is
the client's to do. Time comes from an injectable clock, so the arithmetic is tested on a fake.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from graphs.core.clock import Clock
from graphs.settings import ActorLimits

__all__ = ["ActorLimiter", "Bucket", "Refusal"]


@dataclass(slots=True)
class Bucket:
    """A token bucket: `capacity` tokens, refilled at `rate` per second."""

    capacity: float
    rate: float
    tokens: float
    updated: float

    def take(self, now: float, count: float = 1.0) -> float:
        """Take `count` tokens; return 0, or the seconds until they would be there."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= count:
            self.tokens -= count
            return 0.0
        return (count - self.tokens) / self.rate if self.rate > 0 else math.inf


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """Why a request is refused at the edge, and when to try again."""

    reason: str
    """runs_per_minute, runs_in_flight or requests_per_minute."""
    retry_after_s: float
    """Seconds after which the same request may be admitted."""
    detail: str
    """A sentence for the client."""


@dataclass(slots=True)
class _Actor:
    runs: Bucket
    requests: Bucket
    syncing: int = 0
    background: dict[str, str] = field(default_factory=dict)  # run id -> thread id


class ActorLimiter:
    """Admission per actor identity, each kind of actor (customer, staff) with its limits."""

    def __init__(self, limits: Callable[[str], ActorLimits], clock: Clock | None = None,
                 *, max_actors: int = 100_000) -> None:
        self._limits = limits
        self._clock = clock or Clock()
        self._actors: dict[str, _Actor] = {}
        self._max_actors = max_actors

    def _actor(self, identity: str, kind: str) -> _Actor:
        found = self._actors.get(identity)
        if found is None:
            if len(self._actors) >= self._max_actors:  # bound the memory a key flood can take
                idle = [k for k, a in self._actors.items() if not a.syncing and not a.background]
                for key in idle[: len(idle) // 2 or 1]:
                    del self._actors[key]
            limits = self._limits(kind)
            now = self._clock.monotonic()
            found = self._actors[identity] = _Actor(
                runs=Bucket(limits.runs_burst, limits.runs_per_minute / 60.0,
                            float(limits.runs_burst), now),
                requests=Bucket(limits.requests_burst, limits.requests_per_minute / 60.0,
                                float(limits.requests_burst), now))
        return found

    def request(self, identity: str, kind: str) -> Refusal | None:
        """Admit one request of any kind, or say why not."""
        wait = self._actor(identity, kind).requests.take(self._clock.monotonic())
        if not wait:
            return None
        per_minute = self._limits(kind).requests_per_minute
        return Refusal(reason="requests_per_minute", retry_after_s=wait,
                       detail=f"too many requests: at most {per_minute:g} a minute")

    async def runs(self, identity: str, kind: str, count: int,
                   still_running: Callable[[str, str], Awaitable[bool]]) -> Refusal | None:
        """Admit `count` runs: within the rate, and within the runs allowed in flight.

        `still_running(thread_id, run_id)` asks the server whether a background run started
        earlier is still pending or running; it is asked only when the count is at the limit.
        """
        actor = self._actor(identity, kind)
        limits = self._limits(kind)
        if actor.syncing + len(actor.background) + count > limits.runs_in_flight:
            for run_id, thread_id in list(actor.background.items()):
                if not await still_running(thread_id, run_id):
                    actor.background.pop(run_id, None)
        if actor.syncing + len(actor.background) + count > limits.runs_in_flight:
            return Refusal(reason="runs_in_flight", retry_after_s=1.0,
                           detail=f"too many runs in flight: at most {limits.runs_in_flight} "
                                  f"at a time; wait for one to finish")
        wait = actor.runs.take(self._clock.monotonic(), count)
        if wait:
            return Refusal(reason="runs_per_minute", retry_after_s=wait,
                           detail=f"too many runs: at most {limits.runs_per_minute:g} a minute")
        return None

    def started(self, identity: str, kind: str) -> None:
        """A synchronous run's request is open (call `finished` when it closes)."""
        self._actor(identity, kind).syncing += 1

    def finished(self, identity: str, kind: str) -> None:
        """A synchronous run's request closed."""
        actor = self._actor(identity, kind)
        actor.syncing = max(0, actor.syncing - 1)

    def background(self, identity: str, kind: str, thread_id: str, run_id: str) -> None:
        """A background run was created; it counts as in flight until the server says it ended."""
        self._actor(identity, kind).background[run_id] = thread_id
