"""Budgets and breakers behind the storage interface: in memory, and shared through Redis."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import pybreaker
import pytest
import redis

from graphs.core.clock import FakeClock
from graphs.core.errors import ConfigError
from graphs.settings import Settings
from tests.conftest import fast_settings
from tools.errors import DependencyError
from tools.governor import CallContext, Governor
from tools.resilience_store import MemoryStore, RedisBudget, RedisStore, open_store

REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"interlock-test-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    yield name
    for key in client.scan_iter(f"{name}:*"):
        client.delete(key)


def settings_for(tmp_path: Path, **policy: float) -> Settings:
    base = fast_settings(tmp_path)
    return base.with_policy("carrier", **policy)


async def failing(limit_s: float) -> None:
    raise DependencyError("503", dependency="carrier", retryable=True, status=503)


def test_open_store() -> None:
    assert isinstance(open_store("memory"), MemoryStore)
    assert isinstance(open_store(REDIS_URL), RedisStore)
    with pytest.raises(Exception, match="INTERLOCK_RESILIENCE_STORE"):
        open_store("etcd://x")
    with pytest.raises(Exception, match="INTERLOCK_RESILIENCE_STORE"):
        Settings.from_env({"INTERLOCK_RESILIENCE_STORE": "zookeeper"})


async def test_two_processes_share_one_breaker_through_redis(tmp_path: Path,
                                                             namespace: str) -> None:
    # Each process judges from its own attempts whether the dependency is down (a window of
    # 4: two failures of two); the opened state is what they share.
    settings = settings_for(tmp_path, fail_max=2, attempts=1, reset_timeout=60,
                            health_window=4)
    clock = FakeClock()
    first = Governor(settings, clock=clock, store=RedisStore(REDIS_URL, namespace=namespace))
    second = Governor(settings, clock=clock, store=RedisStore(REDIS_URL, namespace=namespace))
    for _ in range(2):
        with pytest.raises(DependencyError):
            await first.call("carrier", failing, CallContext(), action="track")
    assert first.breaker("carrier").state == pybreaker.STATE_OPEN
    calls = 0

    async def counted(limit_s: float) -> str:
        nonlocal calls
        calls += 1
        return "ok"

    ctx = CallContext()
    with pytest.raises(DependencyError) as caught:
        await second.call("carrier", counted, ctx, action="track")
    assert caught.value.reason == "breaker_open" and calls == 0
    # A separate in-memory governor knows nothing of it.
    alone = Governor(settings, clock=clock, store=MemoryStore())
    assert await alone.call("carrier", counted, CallContext(), action="track") == "ok"


async def test_two_processes_share_one_retry_budget_through_redis(tmp_path: Path,
                                                                  namespace: str) -> None:
    settings = settings_for(tmp_path, retry_ratio=0.5, retry_reserve=0, attempts=2,
                            fail_max=1000, retry_window=60)
    clock = FakeClock()
    first = Governor(settings, clock=clock, rng=random.Random(0),
                     store=RedisStore(REDIS_URL, namespace=namespace))
    second = Governor(settings, clock=clock, rng=random.Random(0),
                      store=RedisStore(REDIS_URL, namespace=namespace))
    # Ten first attempts through `first` fund floor(10 x 0.5) = 5 retries for both.
    for _ in range(10):
        first.budget("carrier").deposit()
    granted = sum(second.budget("carrier").try_withdraw() for _ in range(8))
    assert granted == 5
    snapshot = first.budget("carrier").snapshot()
    assert (snapshot.requests, snapshot.retries, snapshot.allowed) == (10, 5, 5)
    clock.advance(61)  # the window slides past all of it
    assert first.budget("carrier").snapshot().requests == 0


def test_unreachable_redis_at_start_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        Governor(settings_for(tmp_path), store=RedisStore("redis://127.0.0.1:1/0"))
    assert caught.value.variable == "INTERLOCK_RESILIENCE_STORE"


async def test_redis_lost_later_refuses_retries_instead_of_storming(tmp_path: Path,
                                                                    namespace: str) -> None:
    store = RedisStore(REDIS_URL, namespace=namespace)
    governor = Governor(settings_for(tmp_path, attempts=3), clock=FakeClock(), store=store)
    dead = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    governor.breaker("carrier")  # the dependency's state is made; then its budget is swapped
    governor.budgets["carrier"] = RedisBudget(dead, "gone", governor.settings.policy("carrier"),
                                              governor.clock)
    calls = 0

    async def flaky(limit_s: float) -> None:
        nonlocal calls
        calls += 1
        raise DependencyError("503", dependency="carrier", retryable=True, status=503)

    with pytest.raises(DependencyError) as caught:
        await governor.call("carrier", flaky, CallContext(), action="track")
    assert calls == 1 and caught.value.reason == "retry_budget_exhausted"
