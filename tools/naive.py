"""The naive baseline of the chaos harness: every layer retries on its own.

As in a typical agent stack: the HTTP/SDK layer retries, the tool wrapper around it retries,
and nothing shares what it learns. No budget, no breaker, no bulkhead, no deadline. Interlock
never uses this to serve requests; `interlock chaos` runs it side by side with the governor to
show what the governor prevents.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx

from graphs.core.clock import Clock, iso
from graphs.core.state import Event
from tools.errors import DependencyError
from tools.governor import CallContext, PolicySource

__all__ = ["NAIVE_LAYERS", "NaiveGovernor"]

T = TypeVar("T")


NAIVE_LAYERS = (3, 3)
"""The naive stack's retry loops: a tool retries 3 times, and the agent around it 3 times."""


class NaiveGovernor:
    """Nested retry loops (`layers`, outermost first) with a fixed pause between attempts."""

    def __init__(self, settings: PolicySource, *, layers: tuple[int, ...] = NAIVE_LAYERS,
                 pause_s: float = 0.05, clock: Clock | None = None) -> None:
        self.settings = settings
        self.layers = layers
        self.pause_s = pause_s
        self.clock = clock or Clock()

    async def call(self, dependency: str, operation: Callable[[float], Awaitable[T]],
                   ctx: CallContext, *, action: str) -> T:
        """Call `operation` with every layer retrying whatever failed, however it failed."""
        timeout = self.settings.policy(dependency).timeout

        async def attempt() -> T:
            started = time.perf_counter()
            try:
                async with asyncio.timeout(timeout):
                    result = await operation(timeout)
            except (TimeoutError, httpx.TimeoutException):
                error = DependencyError("timeout", dependency=dependency, retryable=True,
                                        reason="timeout")
            except httpx.TransportError:
                error = DependencyError("transport", dependency=dependency, retryable=True,
                                        reason="transport")
            except DependencyError as exc:
                error = exc
            else:
                self._event(ctx, dependency, action, "ok", started)
                return result
            self._event(ctx, dependency, action, "error", started, error.reason)
            raise error

        async def layer(depth: int) -> T:
            last: DependencyError | None = None
            for n in range(self.layers[depth]):
                if n:
                    await self.clock.sleep(self.pause_s)
                try:
                    return await (attempt() if depth == len(self.layers) - 1
                                  else layer(depth + 1))
                except DependencyError as exc:
                    last = exc
            assert last is not None
            raise last

        return await layer(0)

    def _event(self, ctx: CallContext, dependency: str, action: str, outcome: str,
               started: float, reason: str | None = None) -> None:
        ctx.events.append(Event(
            at=iso(self.clock.now()), kind="attempt", dependency=dependency,
            thread_id=ctx.thread_id, step_id=ctx.step_id,
            detail={"action": action, "outcome": outcome, "reason": reason, "naive": True,
                    "ms": round((time.perf_counter() - started) * 1000, 2)}))
