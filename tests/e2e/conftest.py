"""Fixtures of the end-to-end tests: an app on a fake clock, for freshness over time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from graphs.core.clock import FakeClock
from graphs.runner import Interlock, open_interlock
from graphs.settings import Settings
from tools.toolbox import build_toolbox


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
async def clocked_app(settings: Settings, clock: FakeClock) -> AsyncIterator[Interlock]:
    """The app with every clock of its toolbox the fake one (`clock.advance` moves time)."""
    async with open_interlock(toolbox=build_toolbox(settings, clock=clock)) as opened:
        yield opened
