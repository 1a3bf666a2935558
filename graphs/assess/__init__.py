"""`interlock assess`: a readiness scorecard of any LangGraph graph, read and measured."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver

from graphs.assess.probes import (
    amplification_finding,
    breaking_finding,
    hang_finding,
    intercepted,
    quick_retries,
)
from graphs.assess.scorecard import AREAS, Finding, GraphReport, Scorecard
from graphs.assess.static import static_findings
from graphs.assess.target import load_targets

__all__ = ["AREAS", "Finding", "GraphReport", "Scorecard", "assess", "default_input",
           "intercepted", "load_targets", "static_findings"]

PROBE_REQUESTS = 5
"""Logical requests the amplification probe sends."""
HANG_REQUESTS = 2
"""Requests the hang probe sends (each waits up to its cap, 10 s, when nothing bounds it)."""
BREAKER_REQUESTS = 20
"""Requests the breaking probe sends, one after another, with the dependency down."""


def default_input(graph: Any) -> dict[str, Any]:
    """A request for a graph no input was given for: a user message, if it takes messages."""
    if "messages" in getattr(graph, "channels", {}):
        return {"messages": [{"role": "user", "content": "Where is my order 1042?"}]}
    return {}


async def assess(target: str, *, inputs: Sequence[Any] | None = None, probes: bool = True,
                 hang_cap_s: float = 10.0) -> Scorecard:
    """Load every graph `target` names, read it and probe it (InputError if it cannot load).

    `hang_cap_s`: how long the hang probe waits for a request before calling it stuck.
    """
    reports = []
    for name, graph in load_targets(target):
        findings = static_findings(graph)
        if probes:
            # The probes' runs never land in the graph's own checkpoints (a user's database):
            # a graph compiled with a saver is probed on a copy with one in memory.
            if graph.checkpointer not in (None, True, False):
                graph = graph.copy(update={"checkpointer": InMemorySaver()})
            graph = quick_retries(graph)
            given = list(inputs) if inputs else [default_input(graph)]
            runs = [given[n % len(given)] for n in range(max(PROBE_REQUESTS, len(given)))]
            amplification = await amplification_finding(graph, runs)
            findings.append(amplification)
            findings.append(await breaking_finding(
                graph, [given[n % len(given)] for n in range(BREAKER_REQUESTS)],
                called_before=round(float(amplification.figure or 0) * len(runs))))
            findings.append(await hang_finding(graph, given[:HANG_REQUESTS], cap_s=hang_cap_s))
        reports.append(GraphReport(name=name, findings=findings))
    return Scorecard(target=target, graphs=reports,
                     checks_run=("static", "probes") if probes else ("static",))
