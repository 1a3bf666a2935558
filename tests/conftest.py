"""Shared fixtures: no real network, temporary homes, fast settings, compiled graphs."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from graphs.runner import Interlock, open_interlock
from graphs.settings import Settings
from tools.policy import DependencyPolicy
from tools.toolbox import build_toolbox

_real_connect = socket.socket.connect
_real_getaddrinfo = socket.getaddrinfo


def _loopback(host: Any) -> bool:
    if host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/e2e is the `e2e` lane (`make unit` leaves it out)."""
    for item in items:
        if "e2e" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any test that reaches beyond this machine (loopback stays open for local stubs)."""

    def guarded_connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            pytest.fail(f"test tried to reach the network: {address!r}")
        return _real_connect(self, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _loopback(host):
            pytest.fail(f"test tried to resolve {host!r}")
        return _real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2",
                "LANGSMITH_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    yield


def fast_settings(home: Path, **changes: Any) -> Settings:
    """Settings for tests: a temporary home and short backoffs."""
    base = Settings(home=home)
    policies = {d.name: replace(base.policy(d.name), backoff_base=0.01, backoff_cap=0.02)
                for d in base.dependencies}
    return replace(base, policies=policies, **changes)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return fast_settings(tmp_path / "home")


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Interlock]:
    async with open_interlock(settings, toolbox=build_toolbox(settings)) as opened:
        yield opened


__all__ = ["DependencyPolicy", "fast_settings"]


POSTGRES = "postgresql://postgres@127.0.0.1:5432"
"""The machine's PostgreSQL (trust auth); tests make and drop their own database in it."""


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database of this test session's own, dropped when the session ends."""
    import uuid

    import psycopg

    name = f"interlock_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{POSTGRES}/test", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        with psycopg.connect(f"{POSTGRES}/test", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def postgres_url(postgres_database: str) -> Iterator[str]:
    """A schema of this test's own in the session's database, as a URL that selects it."""
    import uuid

    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{postgres_database}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(postgres_database, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
