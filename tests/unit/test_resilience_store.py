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
    # The opened state is what they share (a window of 4: two failures of two is down).
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


async def test_failures_one_process_saw_count_for_every_process(tmp_path: Path,
                                                                namespace: str) -> None:
    # `first` fails 7 of 10 calls but never 3 in a row, so it does not trip; `second` then
    # trips on its own 3 in a row, because the window that says "down" holds both processes'
    # attempts (alone, its window would hold 3 attempts: too few to judge).
    settings = settings_for(tmp_path, fail_max=3, attempts=1, reset_timeout=60,
                            health_window=10, down_rate=0.7)
    clock = FakeClock()
    first = Governor(settings, clock=clock, store=RedisStore(REDIS_URL, namespace=namespace))
    second = Governor(settings, clock=clock, store=RedisStore(REDIS_URL, namespace=namespace))

    async def fine(limit_s: float) -> str:
        return "ok"

    for outcome in "FFSFFSFFSF":
        try:
            await first.call("carrier", failing if outcome == "F" else fine, CallContext(),
                             action="track")
        except DependencyError:
            pass
    assert first.breaker("carrier").state == pybreaker.STATE_CLOSED
    assert second.breaker("carrier").breaker.recent.down  # what `first` saw, `second` sees
    assert second.breaker("carrier").failure_rate() == pytest.approx(0.7)
    for _ in range(3):
        with pytest.raises(DependencyError):
            await second.call("carrier", failing, CallContext(), action="track")
    assert first.breaker("carrier").state == pybreaker.STATE_OPEN
    alone = Governor(settings, clock=clock, store=MemoryStore())
    assert not alone.breaker("carrier").breaker.recent.down


async def test_redis_is_never_called_on_the_event_loop(tmp_path: Path, namespace: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    import redis.connection

    loop_thread = threading.get_ident()
    sent: list[bool] = []  # one entry per command packet: was it sent from the loop's thread?
    real = redis.connection.AbstractConnection.send_packed_command

    def watched(self: object, *args: object, **kwargs: object) -> None:
        sent.append(threading.get_ident() == loop_thread)
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    governor = Governor(settings_for(tmp_path, attempts=3, fail_max=1000), clock=FakeClock(),
                        store=RedisStore(REDIS_URL, namespace=namespace))
    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", watched)
    calls = 0

    async def flaky(limit_s: float) -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise DependencyError("503", dependency="carrier", retryable=True, status=503)
        return "ok"

    assert await governor.call("carrier", flaky, CallContext(), action="track") == "ok"
    assert calls == 3
    assert len(sent) > 5 and not any(sent)  # breaker, window and budget: all off the loop
