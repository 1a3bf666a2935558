"""Guards as stages: each returns its verdicts (data); the graph routes on their action.

A stage sits at one of three places: on the `request` (before the planner: the intake guard),
on the `plan` (before the supervisor: the plan guard) or on the `answer` (after the responder:
the output guard comes last, as it writes the answer). `build_graph(guards=[...])` wires an
ordered list of them; to add a guard, write one module with a `GuardStage` and add it to the
list. A stage's decisive verdict (its last) routes the request:

| action | request stage | plan stage | answer stage |
|---|---|---|---|
| allow, redact | next stage, then the planner | next stage, then the supervisor | next stage |
| refuse | the responder (a refusal) | the responder | next stage (it rewrote the draft) |
| skip | the end (nothing to do) | the end | next stage |
| escalate | the responder | the responder | next stage |
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langgraph.types import Send

from graphs.core.answers import Claim, Ground
from graphs.core.clock import Clock
from graphs.core.conversation import Resolution
from graphs.core.state import Plan, Verdict, VerdictAction
from guards.config import GuardSettings

__all__ = ["GuardStage", "Position", "StageDeps", "StageResult", "Check"]

Position = Literal["request", "plan", "answer"]
"""Where a stage sits: on the request, on the plan, or on the answer."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StageResult:
    """What a stage decided: its verdicts (data), and what it writes to state."""

    verdicts: Sequence[Verdict]
    """Its verdicts, in order; the last one's action routes the request."""
    update: Mapping[str, Any] = field(default_factory=dict)
    """State it writes (besides its verdicts)."""
    sends: Sequence[Send] = ()
    """Work it sends out instead of going on (the intake guard putting an unfinished side
    effect back where it was)."""

    @property
    def action(self) -> VerdictAction:
        """The decisive action: the last verdict's (allow with none)."""
        return self.verdicts[-1]["action"] if self.verdicts else "allow"


Check = Callable[..., Awaitable[StageResult]]
"""A stage's node function: `(state)` or `(state, runtime)` -> `StageResult`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StageDeps:
    """What a stage is built from (the graph builder passes the same to every stage)."""

    settings: GuardSettings
    """The limits guards apply."""
    clock: Clock
    """The clock."""
    workers: Mapping[str, Any]
    """The workers by name (each has the traits of `guards.plan.WorkerTraits`)."""
    fallback: Callable[[str, int, Resolution | None], Plan]
    """The rules planner, `(text, turn, carried)`, for a model plan the plan guard rejects
    (`carried`: what the request refers back to in the thread's subject)."""
    grounds: Sequence[Ground] = ()
    """What answers must find grounded (every worker's)."""
    claims: Sequence[Claim] = ()
    """What only executed effects may claim (every worker's)."""
    side_effects: Sequence[str] = ()
    """Workers whose steps change the world."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardStage:
    """One guard: its name (the verdicts' `guard`), where it sits, and how it is built."""

    name: str
    """The guard's name; its node is `<name>_guard`."""
    at: Position
    """request, plan or answer."""
    build: Callable[[StageDeps], Check]
    """Builds the stage's check from what the graph gives every stage."""
    final: bool = False
    """Whether it must be the last at its place (the output guard writes the answer)."""

    @property
    def node(self) -> str:
        """The stage's node name in the graph."""
        return f"{self.name}_guard"
