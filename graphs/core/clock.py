"""Injectable, UTC-aware time: a real clock for runs, a fake one for tests."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

__all__ = ["Clock", "FakeClock", "iso", "parse_iso"]


def iso(moment: datetime) -> str:
    """RFC 3339 text of an aware datetime, in UTC, to the microsecond."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """Parse RFC 3339 text (`Z` or an offset) into an aware UTC datetime."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class Clock:
    """Wall time, monotonic time and sleeping, in one replaceable object."""

    def now(self) -> datetime:
        """The current time, aware, in UTC."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` (cancellable)."""
        await asyncio.sleep(max(0.0, seconds))


class FakeClock(Clock):
    """A clock that moves only when told to; `sleep` advances it instead of waiting."""

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
        self._elapsed = 0.0
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        """The fake current time."""
        return self._start + timedelta(seconds=self._elapsed)

    def monotonic(self) -> float:
        """Seconds since the fake clock started."""
        return self._elapsed

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self._elapsed += max(0.0, seconds)

    def set(self, moment: datetime) -> None:
        """Show `moment` as the current time from now on (monotonic time is not affected)."""
        self._start = moment - timedelta(seconds=self._elapsed)

    async def sleep(self, seconds: float) -> None:
        """Record the sleep and advance the clock without waiting."""
        self.sleeps.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)
