"""A toolbox that calls nothing: every store read and dependency answer comes from a recording.

Used by `interlock replay`. It is the ordinary toolbox with a `ReplayRecorder` at the one seam
every recorded call passes (so each call is served from the record by step, dependency, action
and arguments, and a call the recorded run never made raises `ReplayMismatch`), a governor
that refuses and counts any call that reaches it (a served call never does: only one made
around the seam, such as an adapter without the recorder), and an HTTP transport that refuses
and counts any request that would go out anyway.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx

from graphs.core.clock import Clock
from tools.config import ToolSettings
from tools.errors import DependencyError
from tools.governor import CallContext, Governor
from tools.recording import RecordedResults, ReplayRecorder
from tools.resilience_store import MemoryStore
from tools.toolbox import Toolbox, build_toolbox

__all__ = ["RefusingGovernor", "RefusingTransport", "Refusals", "replay_toolbox"]

T = TypeVar("T")


class RefusingTransport:
    """An HTTP handler that answers 503 and counts: a replay reaches no dependency."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        """Refuse one request."""
        self.calls += 1
        return httpx.Response(503, json={"error": "replay_calls_nothing"})


class RefusingGovernor(Governor):
    """A governor that makes no call: in a replay, a call reaching it went around the record."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.refused: Counter[str] = Counter()

    async def call(self, dependency: str, operation: Callable[[float], Awaitable[T]],
                   ctx: CallContext, *, action: str) -> T:
        """Refuse, count, and say so: nothing leaves a replay."""
        self.refused[dependency] += 1
        raise DependencyError(f"{action} was not recorded; a replay calls nothing",
                              dependency=dependency, retryable=False, reason="not_recorded")


class Refusals:
    """What a replay refused to send: calls that reached the governor or the transport."""

    def __init__(self, governor: RefusingGovernor, transport: RefusingTransport) -> None:
        self.governor = governor
        self.transport = transport

    @property
    def calls(self) -> int:
        """Every call the replay would have made (none of them was)."""
        return sum(self.governor.refused.values()) + self.transport.calls


def replay_toolbox(settings: ToolSettings, results: RecordedResults, clock: Clock
                   ) -> tuple[Toolbox, Refusals]:
    """The toolbox of a replay, and what counts the calls it would have made."""
    refusing = RefusingTransport()
    # Its own breakers in memory: a replay neither reads nor moves the live ones.
    governor = RefusingGovernor(settings, clock=clock, store=MemoryStore())
    toolbox = build_toolbox(settings, clock=clock, recorder=ReplayRecorder(results, clock),
                            governor=governor, transport=refusing)
    return toolbox, Refusals(governor, refusing)
