"""`interlock assess`: a readiness scorecard of any LangGraph graph, read and measured."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver

from graphs.assess.intercept import intercepted
from graphs.assess.isolation import baseline, isolation_finding
from graphs.assess.probes import (
    amplification_finding,
    breaking_finding,
    hang_finding,
    quick_retries,
)
from graphs.assess.runs import run_one
from graphs.assess.scorecard import AREAS, Finding, GraphReport, Scorecard
from graphs.assess.scripted import healthy
from graphs.assess.static import static_findings
from graphs.assess.target import load_targets
from graphs.assess.traces import (
    calls_finding,
    catching,
    redaction_finding,
    traced_load,
    with_personal_data,
)
from graphs.assess.writers import writers_findings

__all__ = ["AREAS", "Finding", "GraphReport", "Scorecard", "assess", "default_inputs",
           "intercepted", "load_targets", "static_findings"]

PROBE_REQUESTS = 5
"""Logical requests the amplification probe sends."""
HANG_REQUESTS = 2
"""Requests the hang probe sends (each waits up to its cap, 10 s, when nothing bounds it)."""
BREAKER_REQUESTS = 20
"""Requests the breaking probe sends, one after another, with the dependency down."""
BASELINE_REQUESTS = 6
"""Healthy requests, each on its own route (what isolation and the writers check read)."""
TRACE_REQUESTS = 2
"""Traced requests carrying personal data."""
HEALTHY_CAP_S = 10.0
"""How long a healthy request may take before the probe stops waiting for it."""


def default_inputs(graph: Any) -> list[dict[str, Any]]:
    """Requests for a graph no input was given for: two user questions, if it takes messages.

    One names an order (a lookup), one does not (a policy question), so a graph that routes
    by what is asked calls different dependencies for each.
    """
    if "messages" in getattr(graph, "channels", {}):
        return [{"messages": [{"role": "user", "content": text}]}
                for text in ("Where is my order 1042?", "What is your return policy?")]
    return [{}]


def _probe_copy(graph: Any) -> Any:
    """The graph as the probes run it: its own checkpoints untouched, backoffs not waited."""
    # The probes' runs never land in the graph's own checkpoints (a user's database): a
    # graph compiled with a saver is probed on a copy with one in memory.
    if graph.checkpointer not in (None, True, False):
        graph = graph.copy(update={"checkpointer": InMemorySaver()})
    return quick_retries(graph)


Fresh = Callable[[], Any]
"""Loads the graph under assessment again (a new object when its target allows)."""


async def _faults(first: Any, fresh: Fresh, given: list[Any], findings: list[Finding],
                  measured: dict[str, Any], hang_cap_s: float) -> None:
    """Amplification, breaking and deadlines, each on a graph loaded afresh where possible."""
    runs = [given[n % len(given)] for n in range(max(PROBE_REQUESTS, len(given)))]
    amplification = await amplification_finding(_probe_copy(first), runs, measured=measured)
    findings.append(amplification)
    # A breaker the amplification probe opened is still open in the same object.
    again = fresh()
    before = round(float(amplification.figure or 0) * len(runs)) if again is first else 0
    findings.append(await breaking_finding(
        _probe_copy(again), [given[n % len(given)] for n in range(BREAKER_REQUESTS)],
        called_before=before, measured=measured))
    findings.append(await hang_finding(_probe_copy(fresh()), given[:HANG_REQUESTS],
                                       cap_s=hang_cap_s, measured=measured))


async def _healthy(graph: Any, given: list[Any], findings: list[Finding],
                   measured: dict[str, Any], isolation_cap_s: float) -> None:
    """The baseline (writers), the trace probe, then isolation, which takes dependencies down."""
    import langsmith

    def route(n: int) -> Any:
        return given[n % len(given)]

    with langsmith.tracing_context(enabled=False):
        runs = await baseline(graph, [route(n) for n in range(max(BASELINE_REQUESTS,
                                                                     len(given)))],
                              timeout_s=HEALTHY_CAP_S)
    measured["baseline"] = {"seconds": [r.seconds for r in runs],
                            "hosts": [sorted(r.hosts()) for r in runs],
                            "errors": [r.error for r in runs]}
    written = writers_findings(graph, runs)
    for n, finding in enumerate(findings):
        findings[n] = written.get(finding.id, finding)
    carried = [with_personal_data(route(n)) for n in range(TRACE_REQUESTS)]
    with intercepted(healthy) as box, catching() as caught:
        for n, (given_n, _) in enumerate(carried):
            await run_one(graph, given_n, box, route=n, tag="trace", timeout_s=HEALTHY_CAP_S)
    calls = [c for c in box.calls if c.run_id is not None]
    traced = [calls_finding(caught, calls, roots=TRACE_REQUESTS),
              redaction_finding(caught, sent=all(sent for _, sent in carried))]
    measured["traces"] = {"spans": len(caught.spans), "calls": len(calls),
                          "requests": caught.requests}
    with langsmith.tracing_context(enabled=False):
        isolation, outcomes = await isolation_finding(graph, runs, route,
                                                      cap_s=isolation_cap_s)
    findings.append(isolation)
    findings.extend(traced)
    measured["resilience.isolation"] = [
        {"host": o.host, "mode": o.mode, "baseline_s": list(o.baseline_s),
         "seconds": list(o.seconds), "hurt": list(o.hurt), "cap_s": isolation_cap_s}
        for o in outcomes]


async def assess(target: str, *, inputs: Sequence[Any] | None = None, probes: bool = True,
                 hang_cap_s: float = 10.0, isolation_cap_s: float = 5.0) -> Scorecard:
    """Load every graph `target` names, read it and probe it (InputError if it cannot load).

    Graphs are loaded with LangSmith tracing switched on in the environment, as they would
    run traced in production (whatever they send is caught in-process, never sent).
    `hang_cap_s`: how long the hang probe waits for a request before calling it stuck;
    `isolation_cap_s`: the same for a request while another dependency is down.
    """
    reports = []
    with traced_load():
        loaded = load_targets(target)
        for name, graph in loaded:
            started = time.perf_counter()
            findings = static_findings(graph)
            measured: dict[str, Any] = {}
            if probes:
                import langsmith

                def fresh(name: str = name, graph: Any = graph) -> Any:
                    # Each probe on a graph loaded afresh: the one before opened breakers and
                    # spent budgets. A graph imported from a package is the same object.
                    return dict(load_targets(target)).get(name, graph)

                given = list(inputs) if inputs else default_inputs(graph)
                with langsmith.tracing_context(enabled=False):
                    await _faults(graph, fresh, given, findings, measured, hang_cap_s)
                await _healthy(_probe_copy(fresh()), given, findings, measured,
                               isolation_cap_s)
            reports.append(GraphReport(name=name, findings=findings, measurements=measured,
                                       seconds=round(time.perf_counter() - started, 2)))
    return Scorecard(target=target, graphs=reports,
                     checks_run=("static", "probes") if probes else ("static",))
