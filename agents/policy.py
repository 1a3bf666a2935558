"""Policy worker: pins the refund-policy version in effect at the time of the request."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from pydantic import BaseModel, ConfigDict

from agents.base import (
    WorkerDeps,
    WorkerGraph,
    WorkerSpec,
    call_context,
    make_fact,
    report,
    single_node_worker,
)
from graphs.core.answers import AnswerContext
from graphs.core.clock import iso, parse_iso
from graphs.core.state import Fact, InterlockContext, WorkerState

__all__ = ["SPEC", "PolicyValue", "describe"]


class PolicyValue(BaseModel):
    """The `policy` fact: the refund-policy version that decides this request."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    found: bool
    version: str | None = None
    effective_from: str | None = None
    effective_to: str | None = None
    return_window_days: int | None = None
    text: str | None = None
    superseded: list[str] = []


def _build(deps: WorkerDeps) -> WorkerGraph:
    toolbox = deps.toolbox

    async def pin_policy(state: WorkerState, runtime: Runtime[InterlockContext]
                         ) -> dict[str, Any]:
        step = state["step"]
        at = parse_iso(state["request"]["received_at"])
        ctx = call_context(state, toolbox, runtime)
        versions = await toolbox.store.policies(ctx)
        current = next((p for p in versions if p.in_effect(at)), None)
        if current is None:
            fact = make_fact(SPEC, step, kind="policy", subject="refund",
                             value=PolicyValue(name="refund", found=False), source="store",
                             as_of=at)
            return report(SPEC, step, "not_found", [fact], note="no policy in effect",
                          events=ctx.events)
        value = PolicyValue(
            name="refund", found=True, version=current.version,
            effective_from=iso(current.effective_from),
            effective_to=iso(current.effective_to) if current.effective_to else None,
            return_window_days=current.return_window_days, text=current.text,
            superseded=[p.version for p in versions
                        if p.effective_to is not None and p.effective_to <= at])
        fact = make_fact(SPEC, step, kind="policy", subject="refund", value=value,
                         source="store", as_of=at, version=current.version)
        return report(SPEC, step, "done", [fact], events=ctx.events)

    return single_node_worker(SPEC, pin_policy)


def describe(fact: Fact, context: AnswerContext) -> str | None:
    """How the `policy` fact reads: stated when the policy was asked about, else only used."""
    if "policy" not in context.intents:
        return None
    v = fact["value"]
    if not v["found"]:
        return "No refund policy is in effect right now."
    return (f"Refund policy {v['version']} (in effect since {str(v['effective_from'])[:10]}): "
            f"{v['text']}")


SPEC = WorkerSpec(
    name="policy", capability="explain the refund policy", version="1.0.0",
    description="Finds the refund-policy version in effect when the request was made.",
    owns={"policy": PolicyValue}, build=_build,
    produces=lambda step: ["policy:refund"], describe=describe,
)
