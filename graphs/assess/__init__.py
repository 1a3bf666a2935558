"""`interlock assess`: a readiness scorecard of any LangGraph graph, read and measured."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver

from graphs.assess.intercept import Intercepted, intercepted
from graphs.assess.interrupts import interrupts_finding
from graphs.assess.isolation import baseline, isolation_finding
from graphs.assess.probes import (
    Target,
    amplification_finding,
    breaking_finding,
    hang_finding,
    quick_retries,
)
from graphs.assess.runs import RECURSION_LIMIT, Run, run_one
from graphs.assess.scorecard import AREAS, Finding, GraphReport, Scorecard
from graphs.assess.scripted import healthy, sample, sample_type
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
    by what is asked calls different dependencies for each. A graph with another input schema
    gets an instance of it (every field filled).
    """
    if "messages" in getattr(graph, "channels", {}):
        return [{"messages": [{"role": "user", "content": text}]}
                for text in ("Where is my order 1042?", "What is your return policy?")]
    schema = getattr(getattr(graph, "builder", None), "input_schema", None)
    if schema is not None:  # any other input: an instance of the graph's own input schema
        made = sample_type(schema)
        if isinstance(made, dict) and made:
            return [made]
    try:
        made = sample(graph.get_input_jsonschema(), every=True)
    except Exception:  # a schema that cannot be read: the probes say what failed
        made = {}
    return [made if isinstance(made, dict) else {}]


def _probe_copy(graph: Any) -> Any:
    """The graph as the probes run it: its own checkpoints untouched, backoffs not waited."""
    # The probes' runs never land in the graph's own checkpoints (a user's database): they
    # run on a copy with a saver in memory, as a server would give one that has none (so an
    # interrupt() can stop a run). A graph compiled with checkpointer=False keeps it.
    if graph.checkpointer is not False:
        graph = graph.copy(update={"checkpointer": InMemorySaver()})
    return quick_retries(graph)


Fresh = Callable[[], Any]
"""Loads the graph under assessment again (a new object when its target allows)."""

_PROBED = ("resilience.amplification", "resilience.breaking", "resilience.deadlines",
           "resilience.isolation", "traces.calls", "traces.redaction", "state.reducers",
           "state.interrupts")
"""Checks whose verdict rests on the probe requests running."""


def _replace(findings: list[Finding], *found: Finding) -> None:
    """Put each of `found` in place of the finding of the same id (appended if none)."""
    for finding in found:
        at = next((n for n, f in enumerate(findings) if f.id == finding.id), None)
        if at is None:
            findings.append(finding)
        else:
            findings[at] = finding


def _input_note(runs: Sequence[Run]) -> str:
    """What to say when every probe request failed before doing anything."""
    if not runs or any(r.answered or r.calls for r in runs):
        return ""
    errors = list(dict.fromkeys(r.error for r in runs if r.error))
    why = errors[0] if errors else "no answer"
    return (f"every probe request failed before reaching a dependency ({why}): give "
            f"--input FILE with requests this graph accepts")


async def _traced(graph: Any, route: Callable[[int], Any], box: Intercepted,
                  measured: dict[str, Any]) -> list[Finding]:
    """The trace probe: two requests carrying personal data, traced and caught."""
    carried = [with_personal_data(route(n)) for n in range(TRACE_REQUESTS)]
    runs = []
    async with box.phase(healthy):
        with catching() as caught:
            for n, (given_n, _) in enumerate(carried):
                runs.append(await run_one(graph, given_n, box, route=n, tag="trace",
                                          timeout_s=HEALTHY_CAP_S))
    calls = [c for r in runs for c in r.calls]
    measured["traces"] = {"spans": len(caught.spans), "calls": len(calls),
                          "requests": caught.requests}
    return [calls_finding(caught, calls, roots=TRACE_REQUESTS),
            redaction_finding(caught, sent=all(sent for _, sent in carried))]


async def _probe(graph: Any, fresh: Fresh, given: list[Any], findings: list[Finding],
                 measured: dict[str, Any], box: Intercepted, hang_cap_s: float,
                 isolation_cap_s: float) -> None:
    """Every probe of one graph, each on a graph loaded afresh where the target allows."""
    import langsmith

    def route(n: int) -> Any:
        return given[n % len(given)]

    first = _probe_copy(graph)
    with langsmith.tracing_context(enabled=False):
        runs = await baseline(first, [route(n) for n in range(max(BASELINE_REQUESTS,
                                                                     len(given)))],
                              timeout_s=HEALTHY_CAP_S, box=box)
    measured["baseline"] = {"seconds": [r.seconds for r in runs],
                            "hosts": [sorted(r.hosts()) for r in runs],
                            "errors": [r.error for r in runs]}
    _replace(findings, *writers_findings(graph, runs).values())
    declared = sorted({*getattr(graph, "interrupt_before_nodes", []),
                       *getattr(graph, "interrupt_after_nodes", [])})
    _replace(findings, interrupts_finding(runs, static=declared))
    looped = [r for r in runs if r.error and r.error.startswith("GraphRecursionError")]
    if looped:
        _replace(findings, Finding(
            id="ordering.cycles", area="ordering", title="cycles are bounded", status="fail",
            evidence=f"{len(looped)} of {len(runs)} healthy probe requests ran until the "
                     f"recursion limit ({RECURSION_LIMIT} steps) stopped them: a loop that "
                     f"nothing in the graph ends", figure=len(looped),
            fix="bound the loop in state (a hop counter the router checks, or a last "
                "iteration that routes to END) and set an explicit recursion_limit"))
    traced = await _traced(first, route, box, measured)
    needs: dict[str, list[int]] = {}
    normal: dict[str, dict[int, int]] = {}
    repeats: dict[str, dict[int, int]] = {}
    for run in runs:
        for call in run.calls:
            if run.route not in needs.setdefault(call.host, []):
                needs[call.host].append(run.route)
            normal.setdefault(call.host, {}).setdefault(run.route, 0)
            normal[call.host][run.route] += 1
        for host in run.hosts():
            mine = [c for c in run.calls if c.host == host]
            repeats.setdefault(host, {})[run.route] = len(mine) - len({c.digest for c in mine})
    loaded = [graph]

    def again() -> Any:
        loaded.append(fresh())
        return loaded[-1]

    def targets() -> list[Target]:
        made = []
        for host, routes in needs.items():
            raw = again()
            made.append(Target(host=host, graph=_probe_copy(raw), routes=routes,
                               inputs=[route(r) for r in routes], healthy=normal[host],
                               repeats=repeats[host], before=0))
        return made

    with langsmith.tracing_context(enabled=False):
        requests = [route(n) for n in range(max(PROBE_REQUESTS, len(given)))]
        if needs:
            amplification = await amplification_finding(
                first, requests, measured=measured, box=box, targets=targets())
            same = all(g is graph for g in loaded)
            earlier = measured.get("resilience.amplification", {}).get("hosts", {})
            breakers = [Target(host=t.host, graph=t.graph, routes=t.routes, inputs=t.inputs,
                               healthy=t.healthy, repeats=t.repeats,
                               before=int(earlier.get(t.host, 0)) if same else 0)
                        for t in targets()]
            breaking = await breaking_finding(first, requests, measured=measured, box=box,
                                              targets=breakers, requests=BREAKER_REQUESTS)
        else:
            amplification = await amplification_finding(_probe_copy(again()), requests,
                                                        measured=measured, box=box)
            breaking = await breaking_finding(
                _probe_copy(again()), [route(n) for n in range(BREAKER_REQUESTS)],
                measured=measured, box=box)
        # Each dependency hangs in turn (one request each, side by side), the others up:
        # what is behind a model is reached too.
        hanging: list[str | None] = [*needs] or [None] * min(HANG_REQUESTS, len(runs))
        callers = [needs[h][0] if h else n for n, h in enumerate(hanging)]
        deadlines = await hang_finding(_probe_copy(again()), [route(r) for r in callers],
                                       routes=callers, hosts=hanging, cap_s=hang_cap_s,
                                       measured=measured, box=box)
        isolation, outcomes = await isolation_finding(_probe_copy(again()), runs, route,
                                                      cap_s=isolation_cap_s, box=box)
    measured["resilience.isolation"] = [
        {"host": o.host, "mode": o.mode, "baseline_s": list(o.baseline_s),
         "seconds": list(o.seconds), "hurt": list(o.hurt), "cap_s": isolation_cap_s}
        for o in outcomes]
    if len(loaded) > 1 and all(g is graph for g in loaded):
        shared = ("; the target is imported from a package, so every probe ran on the same "
                  "graph object: a breaker an earlier probe opened may have stopped calls here")
        deadlines = replace(deadlines, evidence=deadlines.evidence + shared)
        isolation = replace(isolation, evidence=isolation.evidence + shared)
    findings.extend([amplification, breaking, deadlines, isolation, *traced])
    if note := _input_note(runs):
        for n, finding in enumerate(findings):
            if finding.id in _PROBED and finding.status in ("n/a", "pass"):
                findings[n] = replace(finding, status="n/a",
                                      evidence=f"{finding.evidence}; {note}")


async def assess(target: str, *, inputs: Sequence[Any] | None = None, probes: bool = True,
                 hang_cap_s: float = 10.0, isolation_cap_s: float = 5.0) -> Scorecard:
    """Load every graph `target` names, read it and probe it (InputError if it cannot load).

    Graphs are loaded with LangSmith tracing switched on in the environment, as they would
    run traced in production (whatever they send is caught in-process, never sent), and with
    every outbound call answered in-process from the first import on.
    `hang_cap_s`: how long the hang probe waits for a request before calling it stuck;
    `isolation_cap_s`: the same for a request while another dependency is down.
    """
    reports = []
    with traced_load(), intercepted(healthy) as box:
        try:
            loaded = load_targets(target)
            for name, graph in loaded:
                started = time.perf_counter()
                findings = static_findings(graph)
                measured: dict[str, Any] = {}
                if probes:
                    def fresh(name: str = name, graph: Any = graph) -> Any:
                        # Each probe on a graph loaded afresh: the one before opened
                        # breakers and spent budgets. One imported from a package is the
                        # same object each time.
                        box.answer = healthy  # what its module calls while loading
                        return dict(load_targets(target)).get(name, graph)

                    given = list(inputs) if inputs else default_inputs(graph)
                    await _probe(graph, fresh, given, findings, measured, box, hang_cap_s,
                                 isolation_cap_s)
                reports.append(GraphReport(name=name, findings=findings,
                                           measurements=measured,
                                           seconds=round(time.perf_counter() - started, 2)))
        finally:
            await box.asettle(quiet_s=0.5)
    return Scorecard(target=target, graphs=reports,
                     checks_run=("static", "probes") if probes else ("static",))
