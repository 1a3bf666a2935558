"""Human checkpoints before side effects, measured: what a node sent before it interrupted.

When a node calls `interrupt()`, LangGraph stops it and, on resume, runs it again from its
first line. A POST (PUT, PATCH, DELETE) the node sent before the interrupt is sent again then,
unless it carries an idempotency key: the payment the human was asked about is made twice, or
made before anyone was asked. The healthy baseline shows which nodes interrupted and what they
had sent first.
"""

from __future__ import annotations

from collections.abc import Sequence

from graphs.assess.runs import Run
from graphs.assess.scorecard import Finding
from graphs.assess.scripted import is_model_call

__all__ = ["interrupts_finding"]


def interrupts_finding(runs: Sequence[Run], *, static: Sequence[str] = ()) -> Finding:
    """`state.interrupts`: every interrupt comes before the side effects of its node."""
    check, title = "state.interrupts", "human checkpoints come before side effects"
    stopped: dict[str, int] = {}
    before: dict[str, set[str]] = {}
    keyed: dict[str, set[str]] = {}
    effects: dict[str, set[str]] = {}
    for run in runs:
        for write in run.writes:
            node = f"{write.graph}{write.node}"
            sent = [c for c in run.calls if c.node == node and c.mutating
                    and not is_model_call(c.path)]
            for call in sent:
                effects.setdefault(node, set()).add(f"{call.method} {call.host}{call.path}")
            if not write.interrupted:
                continue
            stopped[node] = stopped.get(node, 0) + 1
            for call in sent:
                (keyed if call.keyed else before).setdefault(node, set()).add(
                    f"{call.method} {call.host}{call.path}")
    declared = (f"; declared interrupts: {', '.join(static)}" if static else "")
    if before:
        said = "; ".join(f"node {n} sent {', '.join(sorted(c))} and then interrupted"
                         for n, c in sorted(before.items()))
        return Finding(id=check, area="state", title=title, status="fail",
                       evidence=f"{said}: on resume LangGraph runs the node again from its "
                                f"start, so the request goes out again, and it went out "
                                f"before anyone approved it{declared}", figure=len(before),
                       fix="; ".join(f"in node {n}, call interrupt() before the side effect "
                                     f"(or move the side effect to a node after the "
                                     f"approval), and send it with an Idempotency-Key"
                                     for n in sorted(before)))
    if stopped:
        again = (f"; {', '.join(sorted(keyed))} re-send under an Idempotency-Key on resume"
                 if keyed else "")
        return Finding(id=check, area="state", title=title, status="pass",
                       evidence=f"{sum(stopped.values())} runs stopped at interrupt() in "
                                f"{', '.join(sorted(stopped))}, none of them after sending a "
                                f"side effect unkeyed{again}{declared}", figure=0)
    if static:
        return Finding(id=check, area="state", title=title, status="pass",
                       evidence=f"interrupts declared before or after nodes {', '.join(static)}"
                                f" (no run reached one)", figure=0)
    listed = "; ".join(f"{n}: {', '.join(sorted(c))}" for n, c in sorted(effects.items()))
    return Finding(id=check, area="state", title=title, status="n/a",
                   evidence="no probe run reached an interrupt" + (
                       f"; side effects sent without one: {listed}" if listed else
                       " and none sent a side effect (POST, PUT, PATCH, DELETE)"), figure=0)
