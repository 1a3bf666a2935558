"""Fact guard: after every wave of workers, commit only facts that are owned and well-formed.

Workers never write `facts` themselves: a worker subgraph's output schema lets only its report
through, and this guard is the one node that writes `facts`. A fact of a kind the step's worker
does not own, a report that claims another worker's step, or a value that does not match the
kind's schema is rejected, recorded as a verdict, and the owner's value stays in force.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langgraph.types import Overwrite
from pydantic import BaseModel, TypeAdapter, ValidationError

from graphs.core.actors import viewer_of
from graphs.core.answers import plural
from graphs.core.clock import Clock, iso
from graphs.core.freshness import scope_of
from graphs.core.state import Fact, InterlockState, StepResult, Verdict

__all__ = ["check_fact", "make_fact_guard"]

GUARD = "facts"
_FACT = TypeAdapter(Fact)


def check_fact(fact: Any, *, worker: str, step_id: str, owns: Mapping[str, type[BaseModel]],
               owner_of: Mapping[str, str], scope: str | None = None) -> str | None:
    """Why `fact` may not be committed for `worker`'s step (None: it may)."""
    try:
        fact = _FACT.validate_python(fact, strict=True)
    except ValidationError as exc:
        return f"schema: not a fact ({exc.error_count()} errors)"
    kind = fact["kind"]
    if kind not in owns:
        owner = owner_of.get(kind, "nobody")
        return f"ownership: {worker} may not write {kind} facts ({fact['id']}); owner: {owner}"
    if fact["worker"] != worker or fact["step_id"] != step_id:
        return (f"provenance: {fact['id']} claims {fact['worker']}/{fact['step_id']}, "
                f"written by {worker}/{step_id}")
    if scope is not None and fact["scope"] != scope:
        return f"scope: {fact['id']} is a {fact['scope']!r} view, the request is {scope!r}"
    if fact["id"] != f"{kind}:{fact['subject']}":
        return f"schema: id {fact['id']!r} does not match {kind}:{fact['subject']}"
    try:
        owns[kind].model_validate(fact["value"])
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"schema: {fact['id']} value.{where}: {first['msg']}"
    return None


def make_fact_guard(clock: Clock, owns: Mapping[str, Mapping[str, type[BaseModel]]]) -> Any:
    """The fact guard node; `owns` maps each worker to its fact kinds and their schemas."""
    owner_of = {kind: worker for worker, kinds in owns.items() for kind in kinds}

    async def fact_guard(state: InterlockState) -> dict[str, Any]:
        plan = state.get("plan")
        steps = {s["id"]: s for s in (plan["steps"] if plan else [])}
        turn = state["request"]["turn"]
        scope = scope_of(viewer_of(state["request"]))
        facts: dict[str, Fact] = {}
        results: dict[str, StepResult] = {}
        verdicts: list[Verdict] = []
        degraded = set(state.get("degraded", []))
        for report in state.get("inbox", []):
            step_id = report["step_id"]
            step = steps.get(step_id)
            if step is None or step_id in results:
                verdicts.append(Verdict(guard=GUARD, passed=False, action="refuse",
                                        reasons=[f"unknown_step: {step_id} is not pending"],
                                        fact_ids=[], step_id=step_id, turn=turn,
                                        at=iso(clock.now())))
                continue
            worker = step["worker"]
            problems: list[str] = []
            accepted: list[str] = []
            if report["worker"] != worker:
                problems.append(f"impersonation: report from {report['worker']} for a step of "
                                f"{worker}")
            else:
                for fact in report["facts"]:
                    problem = check_fact(fact, worker=worker, step_id=step_id,
                                         owns=owns.get(worker, {}), owner_of=owner_of,
                                         scope=scope)
                    if problem:
                        problems.append(problem)
                    else:
                        facts[fact["id"]] = fact
                        accepted.append(fact["id"])
            status = report["status"]
            if problems and not accepted and status == "done":
                status = "failed"
            results[step_id] = StepResult(step_id=step_id, worker=worker, status=status,
                                          fact_ids=accepted, note=report["note"])
            degraded.update(report["degraded"])
            verdicts.append(Verdict(
                guard=GUARD, passed=not problems, action="refuse" if problems else "allow",
                reasons=problems or [f"{plural(len(accepted), 'fact')} from {worker}"],
                fact_ids=accepted, step_id=step_id, turn=turn, at=iso(clock.now())))
        return {"facts": facts, "results": results, "verdicts": verdicts,
                "degraded": sorted(degraded), "inbox": Overwrite([])}

    return fact_guard
