"""Where retry budgets and breaker state live: in-process by default, Redis when shared.

Several processes serving the same graph must share one view of a dependency: one retry budget
(or each process would grant its own ratio), one breaker (or each would keep calling a
dependency the others found dead), and one window of recent outcomes (or each would judge
"down" from its own few attempts). `ResilienceStore` is that seam; `MemoryStore` keeps state in
the process, `RedisStore` (`INTERLOCK_RESILIENCE_STORE=redis://host:port/db`) in Redis, using
pybreaker's own `CircuitRedisStorage` for breakers, a Lua script for the budget window and a
capped list for the outcomes. Its calls block: the governor makes them from a worker thread
(`remote`), never on the event loop.
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import Any, Protocol

import pybreaker
from redis.exceptions import RedisError

from graphs.core.clock import Clock
from graphs.core.errors import ConfigError
from tools.breaker import FailureWindow, Window
from tools.budget import BudgetSnapshot, RetryBudget
from tools.policy import DependencyPolicy

_log = logging.getLogger(__name__)

__all__ = [
    "BudgetStore",
    "MemoryStore",
    "RedisBudget",
    "RedisStore",
    "RedisWindow",
    "ResilienceStore",
    "open_store",
]


class BudgetStore(Protocol):
    """A retry budget: first attempts deposit, retries withdraw."""

    def deposit(self) -> None:
        """Count one first attempt."""

    def try_withdraw(self, ratio: float | None = None) -> bool:
        """Spend one retry if the budget allows it (`ratio` instead of the policy's share)."""

    def snapshot(self) -> BudgetSnapshot:
        """Counts in the current window."""


class ResilienceStore(Protocol):
    """Hands out the budget and the breaker storage of each dependency."""

    name: str
    """`memory` or the store's URL without credentials."""
    remote: bool
    """Whether its calls cross the network (then they are made off the event loop)."""

    def budget(self, dependency: str, policy: DependencyPolicy, clock: Clock) -> BudgetStore:
        """The dependency's retry budget."""

    def breaker_storage(self, dependency: str) -> pybreaker.CircuitBreakerStorage:
        """The dependency's breaker state (pybreaker's storage interface)."""

    def failure_window(self, dependency: str, policy: DependencyPolicy) -> Window:
        """The outcomes of the dependency's recent attempts."""


class MemoryStore:
    """State in this process only (the default)."""

    name = "memory"
    remote = False

    def failure_window(self, dependency: str, policy: DependencyPolicy) -> Window:
        """Recent outcomes in memory."""
        return FailureWindow(policy.health_window, policy.down_rate,
                             keep=policy.degraded_window)

    def budget(self, dependency: str, policy: DependencyPolicy, clock: Clock) -> BudgetStore:
        """A sliding-window budget in memory."""
        return RetryBudget(ratio=policy.retry_ratio, reserve=policy.retry_reserve,
                           window_s=policy.retry_window, clock=clock)

    def breaker_storage(self, dependency: str) -> pybreaker.CircuitBreakerStorage:
        """In-memory breaker storage (pybreaker's)."""
        return pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)


# KEYS: requests zset, retries zset. ARGV: now, window, ratio, reserve, member, mode.
# mode 0 = deposit, 1 = try to withdraw, 2 = snapshot. Returns {requests, retries, granted}.
_BUDGET_SCRIPT = """
local horizon = tonumber(ARGV[1]) - tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', horizon)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', horizon)
local mode = tonumber(ARGV[6])
if mode == 0 then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[5])
end
local requests = redis.call('ZCARD', KEYS[1])
local retries = redis.call('ZCARD', KEYS[2])
local granted = 0
if mode == 1 then
  local allowed = math.floor(requests * tonumber(ARGV[3]) + 1e-9) + tonumber(ARGV[4])
  if retries < allowed then
    redis.call('ZADD', KEYS[2], ARGV[1], ARGV[5])
    retries = retries + 1
    granted = 1
  end
end
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) * 1000) + 1000)
redis.call('PEXPIRE', KEYS[2], math.ceil(tonumber(ARGV[2]) * 1000) + 1000)
return {requests, retries, granted}
"""


class RedisBudget:
    """The same sliding-window budget, kept in Redis so every process shares it.

    Time is wall-clock seconds (monotonic clocks are not shared between machines).
    """

    def __init__(self, client: Any, key: str, policy: DependencyPolicy, clock: Clock) -> None:
        self._client = client
        self._keys = [f"{key}:requests", f"{key}:retries"]
        self._policy = policy
        self._clock = clock
        self._script = client.register_script(_BUDGET_SCRIPT)

    def _run(self, mode: int, ratio: float | None = None) -> tuple[int, int, int]:
        p = self._policy
        result = self._script(keys=self._keys, args=[
            self._clock.now().timestamp(), p.retry_window,
            p.retry_ratio if ratio is None else ratio, p.retry_reserve, uuid.uuid4().hex, mode])
        return int(result[0]), int(result[1]), int(result[2])

    def deposit(self) -> None:
        """Count one first attempt (lost if Redis is unreachable: fewer retries, not more)."""
        try:
            self._run(0)
        except RedisError:
            _log.warning("retry budget %s: Redis unreachable, deposit lost", self._keys[0])

    def try_withdraw(self, ratio: float | None = None) -> bool:
        """Spend one retry if the shared budget allows it; no retry if Redis is unreachable."""
        try:
            return self._run(1, ratio)[2] == 1
        except RedisError:
            _log.warning("retry budget %s: Redis unreachable, retry refused", self._keys[0])
            return False

    def snapshot(self) -> BudgetSnapshot:
        """Counts in the current window, across every process."""
        requests, retries, _ = self._run(2)
        allowed = math.floor(requests * self._policy.retry_ratio + 1e-9) + \
            self._policy.retry_reserve
        return BudgetSnapshot(requests=requests, retries=retries, allowed=allowed)


class RedisWindow:
    """Recent outcomes in a capped Redis list, newest first, shared by every process.

    An unreachable Redis counts nothing and judges nothing down: the breaker then trips on
    failures in a row alone never, and the budget (which refuses retries without Redis)
    keeps the load bounded.
    """

    def __init__(self, client: Any, key: str, size: int, down_rate: float, keep: int) -> None:
        self._client = client
        self._key = key
        self.size = size
        self.down_rate = down_rate
        self._keep = max(size, keep)

    def add(self, failed: bool) -> None:
        """Count one attempt's outcome."""
        try:
            pipe = self._client.pipeline()
            pipe.lpush(self._key, "1" if failed else "0")
            pipe.ltrim(self._key, 0, self._keep - 1)
            pipe.expire(self._key, 86400)
            pipe.execute()
        except RedisError:
            _log.warning("failure window %s: Redis unreachable, outcome lost", self._key)

    def _last(self, n: int) -> list[bytes]:
        try:
            return list(self._client.lrange(self._key, 0, n - 1))
        except RedisError:
            _log.warning("failure window %s: Redis unreachable", self._key)
            return []

    def rate(self, last: int | None = None) -> float:
        """Share of the last `last` attempts (default: `size`) that failed, in every process."""
        seen = self._last(last or self.size)
        return sum(1 for v in seen if v == b"1") / len(seen) if seen else 0.0

    @property
    def down(self) -> bool:
        """Whether `down_rate` of the last `size` attempts failed (half of `size` counted)."""
        seen = self._last(self.size)
        return (len(seen) >= max(1, self.size // 2)
                and sum(1 for v in seen if v == b"1") / len(seen) >= self.down_rate)


class RedisStore:
    """Budgets and breakers shared through Redis by every process that uses the same URL."""

    remote = True

    def __init__(self, url: str, *, namespace: str = "interlock") -> None:
        """`url` may end `?prefix=NAME`: every key then starts with NAME (a cluster's own)."""
        from urllib.parse import parse_qsl, urlencode

        import redis

        base, _, query = url.partition("?")
        params = dict(parse_qsl(query))
        namespace = params.pop("prefix", "") or namespace
        rest = urlencode(params)
        self._client = redis.Redis.from_url(f"{base}?{rest}" if rest else base,
                                            socket_timeout=0.5, socket_connect_timeout=0.5)
        self._namespace = namespace
        self.name = base.split("@")[-1]

    def budget(self, dependency: str, policy: DependencyPolicy, clock: Clock) -> BudgetStore:
        """The dependency's budget in Redis."""
        return RedisBudget(self._client, f"{self._namespace}:budget:{dependency}", policy, clock)

    def failure_window(self, dependency: str, policy: DependencyPolicy) -> Window:
        """Recent outcomes in Redis."""
        return RedisWindow(self._client, f"{self._namespace}:window:{dependency}",
                           policy.health_window, policy.down_rate, policy.degraded_window)

    def breaker_storage(self, dependency: str) -> pybreaker.CircuitBreakerStorage:
        """Redis breaker storage (pybreaker's); ConfigError if Redis cannot be reached now."""
        try:
            return pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, self._client,
                                                 namespace=f"{self._namespace}:{dependency}")
        except RedisError as exc:
            raise ConfigError(f"Redis at {self.name} is unreachable ({exc})",
                              variable="INTERLOCK_RESILIENCE_STORE") from None


def open_store(spec: str) -> ResilienceStore:
    """The store a setting names: `memory`, or a `redis://` / `rediss://` URL."""
    if spec == "memory":
        return MemoryStore()
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(spec)
    raise ConfigError("expected `memory` or a redis:// URL",
                      variable="INTERLOCK_RESILIENCE_STORE")
