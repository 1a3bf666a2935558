"""A toolbox that calls nothing: every store read and dependency answer comes from a recording.

Used by `interlock replay`. It is the ordinary toolbox with a `ReplayRecorder` at the one seam
every recorded call passes (so each call is served from the record by step, dependency, action
and arguments, and a call the recorded run never made raises `ReplayMismatch`), and an HTTP
transport that refuses and counts any request that would go out anyway.
"""

from __future__ import annotations

import httpx

from graphs.core.clock import Clock
from tools.config import ToolSettings
from tools.recording import RecordedResults, ReplayRecorder
from tools.toolbox import Toolbox, build_toolbox

__all__ = ["RefusingTransport", "replay_toolbox"]


class RefusingTransport:
    """An HTTP handler that answers 503 and counts: a replay reaches no dependency."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        """Refuse one request."""
        self.calls += 1
        return httpx.Response(503, json={"error": "replay_calls_nothing"})


def replay_toolbox(settings: ToolSettings, results: RecordedResults, clock: Clock
                   ) -> tuple[Toolbox, RefusingTransport]:
    """The toolbox of a replay, and the transport that counts what it would have sent."""
    refusing = RefusingTransport()
    toolbox = build_toolbox(settings, clock=clock, recorder=ReplayRecorder(results, clock),
                            transport=refusing)
    return toolbox, refusing
