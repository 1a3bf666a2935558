"""`interlock assess`: a readiness scorecard of any LangGraph graph (static checks so far)."""

from __future__ import annotations

from graphs.assess.scorecard import AREAS, Finding, GraphReport, Scorecard
from graphs.assess.static import static_findings
from graphs.assess.target import load_targets

__all__ = ["AREAS", "Finding", "GraphReport", "Scorecard", "assess", "load_targets",
           "static_findings"]


def assess(target: str) -> Scorecard:
    """Load every graph `target` names and check it (InputError if it cannot be loaded)."""
    return Scorecard(target=target, graphs=[GraphReport(name=name, findings=static_findings(g))
                                            for name, g in load_targets(target)])
