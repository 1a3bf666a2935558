"""Named, tagged spans for LangSmith traces, and nothing at all when tracing is off.

LangGraph traces every node by itself; these spans add what a node does inside: each
dependency call and each of its attempts, each guard verdict, each supervisor hop. They nest
under the current node's run through LangSmith's run-tree context.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import langsmith
from langgraph.config import get_config
from langgraph.runtime import Runtime
from langgraph.types import Command
from langsmith import utils as ls_utils

__all__ = ["Span", "span", "thread_of", "thread_tag", "traced_guard", "tracing_on"]


def tracing_on() -> bool:
    """Whether runs are being traced (settings or the current tracing context)."""
    return bool(ls_utils.tracing_is_enabled())


class Span:
    """A handle to end a span with outputs (a no-op when tracing is off)."""

    def __init__(self, run: Any = None) -> None:
        self._run = run

    @property
    def active(self) -> bool:
        """Whether this span is traced (compute costly outputs only then)."""
        return self._run is not None

    def end(self, **outputs: Any) -> None:
        """Record the span's outputs."""
        if self._run is not None:
            self._run.add_outputs(outputs)


@contextmanager
def span(name: str, *, run_type: str = "chain", tags: Sequence[str] = (),
         metadata: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
         inputs: dict[str, Any] | None = None) -> Iterator[Span]:
    """A child run of the current trace named `name`; free when tracing is off.

    `metadata` may be a function, called only when tracing is on (a breaker's state, say,
    may cost a read of the shared resilience store).
    """
    if not tracing_on():
        yield Span()
        return
    meta = metadata() if callable(metadata) else metadata
    with langsmith.trace(name, run_type=run_type,  # type: ignore[arg-type]
                         tags=[t for t in tags if t], metadata=meta or {},
                         inputs=inputs or {}) as run:
        yield Span(run)


def thread_of(runtime: Runtime[Any] | None) -> str | None:
    """The thread of the run in progress, if it has one."""
    info = runtime.execution_info if runtime is not None else None
    return info.thread_id if info is not None else None


def thread_tag() -> str:
    """`thread:<id>` for the run in progress (empty outside a graph run)."""
    try:
        config = get_config()
    except RuntimeError:
        return ""
    thread = (config.get("configurable") or {}).get("thread_id")
    return f"thread:{thread}" if thread else ""


def traced_guard(guard: str, node: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Wrap a guard node so each verdict it records is also a span named `verdict:<guard>`.

    The wrapper keeps the node's signature (LangGraph injects `runtime` by it).
    """

    @functools.wraps(node)
    async def run(*args: Any, **kwargs: Any) -> Any:
        out = await node(*args, **kwargs)
        if tracing_on():
            update = out.update if isinstance(out, Command) else out
            for verdict in (update or {}).get("verdicts", []) if isinstance(update, dict) else []:
                with span(f"verdict:{guard}", tags=["guard", f"guard:{guard}", thread_tag()],
                          metadata={"guard": guard, "plan_step": verdict.get("step_id"),
                                    "action": verdict.get("action"),
                                    "passed": verdict.get("passed")},
                          inputs={"fact_ids": verdict.get("fact_ids", [])}) as traced:
                    traced.end(verdict=verdict)
        return out

    return run
