"""The readiness scorecard: one row per check, grouped by the checklist's four items."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["AREAS", "Area", "Finding", "GraphReport", "Scorecard", "Status"]

Status = Literal["pass", "warn", "fail", "n/a"]
"""A check's verdict: pass, warn (a risk a careful reader would flag), fail, or n/a."""

Area = Literal["state", "ordering", "resilience", "traces"]
"""Which checklist item a check belongs to."""

AREAS: dict[str, str] = {
    "state": "State & execution: clear state ownership and lifecycle rules",
    "ordering": "State & execution: declared ordering and parallelism",
    "resilience": "Failure & observability: centralized retries, timeouts, circuit breakers",
    "traces": "Failure & observability: end-to-end traces for agent decisions and tool calls",
}
"""The checklist items, in the order the scorecard shows them."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One check's result on one graph."""

    id: str
    """Stable id (`ordering.routes`), prefixed with the subgraph's path for a subgraph."""
    area: Area
    """The checklist item."""
    title: str
    """What is checked, in a few words."""
    status: Status
    """pass, warn, fail or n/a."""
    evidence: str
    """What was found, naming nodes and keys."""
    figure: float | int | None = None
    """The measured number behind the verdict, if there is one."""
    fix: str = ""
    """The concrete change that would make it pass (empty when it passes)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphReport:
    """Every finding on one graph."""

    name: str
    """The graph (its name in `langgraph.json`, or the attribute it was loaded from)."""
    findings: Sequence[Finding] = field(default_factory=tuple)
    """The findings, the graph's own first, then its subgraphs'."""
    measurements: dict[str, Any] = field(default_factory=dict)
    """The figures behind the probes' findings, by check id (what the charts draw)."""
    seconds: float | None = None
    """How long assessing this graph took."""

    def by_area(self) -> dict[str, list[Finding]]:
        """The findings grouped by checklist item, in checklist order."""
        grouped: dict[str, list[Finding]] = {area: [] for area in AREAS}
        for finding in self.findings:
            grouped[finding.area].append(finding)
        return grouped

    def counts(self) -> dict[str, int]:
        """How many findings have each status."""
        counted = {"pass": 0, "warn": 0, "fail": 0, "n/a": 0}
        for finding in self.findings:
            counted[finding.status] += 1
        return counted


@dataclass(frozen=True, slots=True, kw_only=True)
class Scorecard:
    """What `interlock assess` reports on a target."""

    target: str
    """What was assessed, as given."""
    graphs: Sequence[GraphReport]
    """One report per graph."""
    checks_run: Sequence[str] = ("static",)
    """Which kinds of checks ran: `static`, and `probes` (runs against injected faults)."""

    def to_json(self) -> dict[str, Any]:
        """The scorecard as one JSON-ready object."""
        return {"target": self.target, "checks_run": list(self.checks_run),
                "areas": AREAS,
                "graphs": [{"name": g.name, "counts": g.counts(),
                            "areas": {area: [asdict(f) for f in findings]
                                      for area, findings in g.by_area().items()},
                            "measurements": g.measurements, "seconds": g.seconds}
                           for g in self.graphs]}

    def to_text(self) -> str:
        """The scorecard for a terminal."""
        lines = [f"interlock assess {self.target} ({', '.join(self.checks_run)} checks)"]
        for report in self.graphs:
            counts = ", ".join(f"{n} {s}" for s, n in report.counts().items() if n)
            took = f" ({report.seconds:.1f} s)" if report.seconds is not None else ""
            lines.append(f"\ngraph {report.name}: {counts}{took}")
            for area, findings in report.by_area().items():
                if not findings:
                    continue
                lines.append(f"  {AREAS[area]}")
                for f in findings:
                    figure = f" [{f.figure}]" if f.figure is not None else ""
                    lines.append(f"    {f.status:<4} {f.id}: {f.evidence}{figure}")
                    if f.fix:
                        lines.append(f"         fix: {f.fix}")
        return "\n".join(lines)
