"""One probe request run against the assessed graph: its calls, time, error and writes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from graphs.assess.intercept import Call, Intercepted, request_scope

__all__ = ["Run", "Write", "run_each", "run_one", "run_routes"]

_IDS = count(1)
RECURSION_LIMIT = 50
"""The probes' recursion limit: a loop with nothing else to end it stops here."""


@dataclass(frozen=True, slots=True)
class Write:
    """One task's writes in one step: which graph (subgraph path), step, node, state keys."""

    graph: str
    scope: str
    """The subgraph invocation (namespace with task ids): steps count within one."""
    step: int
    node: str
    keys: tuple[str, ...]
    failed: bool = False
    """The task raised: what it would have written is unknown."""
    interrupted: bool = False
    """The task stopped at an `interrupt()`."""


@dataclass(slots=True)
class Run:
    """One probe request."""

    route: int
    """The route it took (what the scripted model chose by)."""
    calls: list[Call] = field(default_factory=list)
    """The outbound calls it made."""
    seconds: float | None = None
    """How long until it came back (None: not within the probe's cap)."""
    error: str | None = None
    """`Type: message` of what it raised, if it did."""
    writes: list[Write] = field(default_factory=list)
    """What each task wrote (observed runs only)."""

    @property
    def answered(self) -> bool:
        """Came back without raising."""
        return self.seconds is not None and self.error is None

    def hosts(self) -> set[str]:
        """The hosts it called."""
        return {c.host for c in self.calls}


def _graph_path(namespace: Sequence[str]) -> str:
    """`a/b/` for a task of subgraph b inside node a (empty for the graph itself)."""
    return "".join(f"{part.split(':')[0]}/" for part in namespace)


async def _observe(graph: Any, given: Any, config: dict[str, Any], run: Run) -> None:
    async for namespace, chunk in graph.astream(given, config, stream_mode="debug",
                                                subgraphs=True):
        if not isinstance(chunk, dict) or chunk.get("type") != "task_result":
            continue
        payload = chunk.get("payload") or {}
        result = payload.get("result")
        keys = (tuple(result) if isinstance(result, dict)
                else tuple(k for k, _ in result) if isinstance(result, list) else ())
        run.writes.append(Write(graph=_graph_path(namespace), scope="|".join(namespace),
                                step=int(chunk.get("step", 0)),
                                node=str(payload.get("name", "")), keys=keys,
                                failed=bool(payload.get("error")),
                                interrupted=bool(payload.get("interrupts"))))


async def run_one(graph: Any, given: Any, box: Intercepted, *, route: int, tag: str,
                  timeout_s: float, observe: bool = False) -> Run:
    """Run `given` once as probe request route `route`; never raises for the graph's errors."""
    run_id = next(_IDS)
    run = Run(route=route)
    config = {"configurable": {"thread_id": f"assess-{tag}-{run_id}"},
              "recursion_limit": RECURSION_LIMIT}
    started = time.perf_counter()
    with request_scope(run_id, route):
        cap = asyncio.timeout(timeout_s)
        try:
            async with cap:
                if observe:
                    await _observe(graph, given, config, run)
                else:
                    await graph.ainvoke(given, config)
        except TimeoutError as exc:
            if not cap.expired():  # the graph's own timeout: it came back
                run.seconds = time.perf_counter() - started
            run.error = (f"TimeoutError: {' '.join(str(exc).split())[:200]}"
                         if run.seconds is not None
                         else "TimeoutError: not back within the probe's cap")
        except asyncio.CancelledError:
            run.error = "cancelled by the probe"
            raise
        except Exception as exc:  # a failing run is what the probes provoke; it came back
            run.seconds = time.perf_counter() - started
            run.error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        else:
            run.seconds = time.perf_counter() - started
        finally:
            run.calls = [c for c in box.calls if c.run_id == run_id]
    return run


async def run_each(graph: Any, inputs: Sequence[Any], box: Intercepted, tag: str, *,
                   timeout_s: float, observe: bool = False) -> list[Run]:
    """Run each input in turn, input `n` as route `n`."""
    return [await run_one(graph, given, box, route=n, tag=tag, timeout_s=timeout_s,
                          observe=observe) for n, given in enumerate(inputs)]


async def run_routes(graph: Any, inputs: Sequence[Any], routes: Sequence[int],
                     box: Intercepted, tag: str, *, timeout_s: float,
                     observe: bool = False) -> list[Run]:
    """Run each input in turn, input `n` as route `routes[n]`."""
    return [await run_one(graph, given, box, route=route, tag=tag, timeout_s=timeout_s,
                          observe=observe) for given, route in zip(inputs, routes, strict=True)]
