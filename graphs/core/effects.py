"""Side effects as proposals: what a worker wants to do, for the approval gate to decide.

A worker with side effects proposes (`Proposal`: what it would do, to what, for whom, at what
cost); the approval gate (`guards.approval`) applies the policy the worker declares
(`EffectRules.problems`), the limits (per effect, per subject and per principal within a
window, likely duplicates), a human's word when those ask for it, and the worker's re-check
after a human decided (`EffectRules.recheck`). The worker then makes the effect exactly once
(`tools.exactly_once`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, NotRequired

from typing_extensions import TypedDict

from graphs.core.actors import Actor
from graphs.core.state import Fact

__all__ = ["Caution", "EffectRules", "Proposal"]


class Proposal(TypedDict):
    """A side effect a worker wants to make; the approval gate decides on it."""

    effect: str
    """The worker proposing it."""
    kind: str
    """What a reviewer is asked (`refund_approval`)."""
    step_id: str
    """The plan step."""
    summary: str
    """One line for a person ("Refund $24.00 on order 1027")."""
    subject: str
    """What it acts on (`order:1027`): limits and duplicates are counted per subject."""
    principal: str | None
    """Whose it is (`customer:3`): limits are counted per principal too."""
    impact_cents: int
    """What it moves."""
    currency: str
    """ISO currency code."""
    amount_stated: bool
    """Whether the request named the amount, or confirmed an offer of it (a human confirms
    one it did not)."""
    confirmed: NotRequired[str]
    """The offer this effect carries out, when the request was a "yes" to one (for the
    record: the gate's limits apply as to any other)."""
    key: str
    """Its idempotency key (the effect and its terms)."""
    effect_id: str
    """The effect's identity without its terms (one per request and step)."""
    policy_version: str | None
    """The policy version it was checked against."""
    requested_at: str
    """When it was asked for."""
    requested_by: Actor
    """Who asked."""
    terms: dict[str, Any]
    """What will be sent (the effects journal notes these before it goes out)."""
    shown: dict[str, Any]
    """What a reviewer sees besides the summary (a refund: order_id, amount_cents)."""
    details: dict[str, Any]
    """The worker's own facts about it, for its policy check and re-check."""
    recent: list[dict[str, Any]]
    """The subject's earlier effects, as the system of record reports them (`id`,
    `impact_cents`, `at`): the gate counts those it does not know of toward the limits."""
    facts: list[str]
    """The facts it rests on (the gate's verdicts name them)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EffectRules:
    """What a side-effecting worker tells the approval gate about its effects."""

    problems: Callable[[Proposal], list[str]]
    """Why its policy forbids a proposal (empty: it allows it), citing the policy version."""
    recheck: Callable[[Proposal, Any, Any], Awaitable[list[str]]]
    """`(proposal, toolbox, call_context)`: what changed while a human decided that stops it
    (empty: nothing did). It reads the world again, through the toolbox."""
    upgrade: Callable[[Mapping[str, Any], Mapping[str, Any]], Proposal | None] | None = None
    """`(held, request)`: a proposal an earlier version checkpointed (one waiting for a human
    across an upgrade) read as a `Proposal`; None where it cannot be read safely (the gate
    refuses it and nothing moves)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Caution:
    """How a worker's facts may make another worker's side effect wait for a human.

    An advisor (a claims assessment, a fraud score) only ever adds caution: the approval gate
    asks a human for a proposal its reason names, and nothing it says can allow a proposal the
    policy refuses or the limits send to a human. The plan guard makes every step of the
    advised workers on the same order wait for the advisor's step, whoever planned it.
    """

    effects: tuple[str, ...]
    """The side-effecting workers it advises (`("refunds",)`)."""
    reason: Callable[[Fact, Proposal], str | None]
    """`(fact, proposal)`: why this fact of the advisor asks a human to decide the proposal
    (`claim_needs_evidence: ...`); None: no caution from it."""
