"""`interlock assess`: a readiness scorecard of any LangGraph graph, read and measured."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver

from graphs.assess.probes import amplification_finding, breaking_finding, intercepted
from graphs.assess.scorecard import AREAS, Finding, GraphReport, Scorecard
from graphs.assess.static import static_findings
from graphs.assess.target import load_targets

__all__ = ["AREAS", "Finding", "GraphReport", "Scorecard", "assess", "default_input",
           "intercepted", "load_targets", "static_findings"]

PROBE_REQUESTS = 5
"""Logical requests the amplification probe sends."""
BREAKER_REQUESTS = 20
"""Requests the breaking probe sends, one after another, with the dependency down."""


def default_input(graph: Any) -> dict[str, Any]:
    """A request for a graph no input was given for: a user message, if it takes messages."""
    if "messages" in getattr(graph, "channels", {}):
        return {"messages": [{"role": "user", "content": "Where is my order 1042?"}]}
    return {}


async def assess(target: str, *, inputs: Sequence[Any] | None = None,
                 probes: bool = True) -> Scorecard:
    """Load every graph `target` names, read it and probe it (InputError if it cannot load)."""
    reports = []
    for name, graph in load_targets(target):
        findings = static_findings(graph)
        if probes:
            # The probes' runs never land in the graph's own checkpoints (a user's database):
            # a graph compiled with a saver is probed on a copy with one in memory.
            if graph.checkpointer not in (None, True, False):
                graph = graph.copy(update={"checkpointer": InMemorySaver()})
            given = list(inputs) if inputs else [default_input(graph)]
            runs = [given[n % len(given)] for n in range(max(PROBE_REQUESTS, len(given)))]
            findings.append(await amplification_finding(graph, runs))
            findings.append(await breaking_finding(graph, [given[n % len(given)]
                                                           for n in range(BREAKER_REQUESTS)]))
        reports.append(GraphReport(name=name, findings=findings))
    return Scorecard(target=target, graphs=reports,
                     checks_run=("static", "probes") if probes else ("static",))
