"""State schema and value types of the supervisor graph (imports nothing of ours).

Everything kept in graph state is plain JSON-like data (TypedDicts of str, int, bool, lists and
dicts): checkpoints stay readable by any tool, the LangGraph server returns them as they are,
notebooks get plain data back, and strict msgpack deserialization needs no allow-list.
Times are RFC 3339 strings in UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NotRequired

from langchain_core.messages import AnyMessage, BaseMessage, RemoveMessage, convert_to_messages
from langgraph.channels.delta import DeltaChannel
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from graphs.core.actors import STAFF, Actor

__all__ = [
    "Actor",
    "ApprovalDecision",
    "ApprovalRequest",
    "Draft",
    "ErrorInfo",
    "Event",
    "Fact",
    "InputState",
    "InterlockContext",
    "InterlockState",
    "NodeSpan",
    "Offer",
    "Plan",
    "PlanStep",
    "RequestInfo",
    "STAFF",
    "STUB_MARK",
    "Status",
    "StepResult",
    "StepStatus",
    "Subject",
    "SubjectAmount",
    "SubjectOrder",
    "Verdict",
    "Wording",
    "VerdictAction",
    "WorkerInput",
    "WorkerOutput",
    "WorkerReport",
    "WorkerState",
    "merge_dicts",
    "merge_inbox",
]

Status = Literal["running", "completed", "awaiting_approval", "refused", "failed"]
"""Status of the current request; the CLI and API report all but `running`."""

StepStatus = Literal["done", "degraded", "not_found", "refused", "failed", "skipped"]
"""Outcome of one plan step."""

VerdictAction = Literal["allow", "redact", "refuse", "escalate", "skip"]
"""What a guard did with what it looked at."""




@dataclass(frozen=True, slots=True, kw_only=True)
class InterlockContext:
    """Run-scoped context passed as `context=` to `ainvoke`/`astream` (not part of state)."""

    actor: Actor = field(default_factory=lambda: Actor(kind="staff", customer_id=None))
    """Who starts or resumes this run; the intake guard records it as the request's actor."""
    deadline_at: str | None = None
    """This invocation's deadline (RFC 3339); a resumed run gets a fresh one instead of the
    request's original, which may have passed while it waited for a human or a restart."""


class RequestInfo(TypedDict):
    """The current turn's request as the intake guard accepted it."""

    turn: int
    """1-based number of this request within its thread."""
    message_id: str
    """Id of the user's message; a message already handled is never handled twice."""
    text: str
    """The user's message, as received."""
    received_at: str
    """When the intake guard accepted the request."""
    deadline_at: str
    """End-to-end deadline of this request; every worker and tool call gets what is left."""
    actor: Actor
    """Who asked, taken from the run's context or the server's auth, never from the message."""
    viewer: NotRequired[Actor]
    """Whose view the request's reads take: the actor's, except that staff asking in a
    customer's thread see what that customer may see (nothing of another customer's enters
    a thread its owner can read)."""
    origin: NotRequired[str]
    """The thread this conversation began in (copies and forks keep it): with the turn and the
    plan step it names a side effect for good, whoever re-runs, replays or copies it."""


class PlanStep(TypedDict):
    """One step of a plan: a worker, its arguments, and the steps it waits for."""

    id: str
    """Unique within the thread: `t<turn>.s<n>`."""
    worker: str
    """Name of the worker subgraph that executes this step."""
    order_id: int | None
    """The order this step is about, if any."""
    amount_cents: int | None
    """An amount the request named (refunds), if any."""
    depends_on: list[str]
    """Ids of steps that must finish first; steps with no pending dependency run in parallel."""
    args: NotRequired[dict[str, Any]]
    """Arguments of the step's worker besides the order and amount (its `WorkerSpec.args`)."""
    offer_only: NotRequired[bool]
    """Propose, do not act: the request answered the desk's offer with an amount of its own
    ("no, just $5 please"), so the desk offers that amount, and only a following "yes" carries
    it out (the plan guard sets it; nothing moves on this step)."""
    advised_by: NotRequired[list[str]]
    """The steps of its `depends_on` that only advise it (`Caution`, set by the plan guard):
    one that did not complete does not stop it; its approval gate then asks a human."""
    confirms: NotRequired[Offer]
    """The offer this step carries out, as the plan guard found it standing (a "yes" to "I can
    refund $39.00 on order 1012"): its amount is the offer's, not one the request named."""


class Plan(TypedDict):
    """The validated plan the supervisor executes."""

    source: Literal["rules", "model"]
    """Which planner produced it (`rules` after a rejected model plan)."""
    intents: list[str]
    """What the planner recognised: order_status, tracking, refund, policy, clarify."""
    steps: list[PlanStep]
    """The steps, in declaration order."""
    waves: list[list[str]]
    """Declared execution order: each wave runs in parallel once the previous wave finished."""
    asks: NotRequired[list[str]]
    """What the planner asks back instead of guessing ("Which order do you mean: 1012 or
    1027?"), or why a confirmation cannot be taken."""


class Fact(TypedDict):
    """Something a worker established, with its provenance."""

    id: str
    """Stable key, `<kind>:<subject>`; a later fact with the same id supersedes the earlier."""
    kind: str
    """order, shipment, policy, refund. Each kind has exactly one owning worker."""
    subject: str
    """What the fact is about (an order number, a policy name)."""
    value: dict[str, Any]
    """The payload, validated against the kind's schema by the fact guard."""
    source: str
    """Where it came from: store, carrier, payments, policy."""
    version: str | None
    """Version of the source document or record, if it has one (policy versions)."""
    as_of: str
    """When the source said so."""
    worker: str
    """Which worker wrote it."""
    worker_version: str
    """That worker's own version."""
    step_id: str
    """The plan step that produced it."""
    scope: str
    """Whose view it is (`staff` or `customer:<id>`); a fact is never reused across scopes."""


class Verdict(TypedDict):
    """A guard's decision, kept in state so the checkpoint history shows who decided what."""

    guard: str
    """Which guard: intake, plan, facts, approval, output."""
    passed: bool
    """False when the guard stopped, rewrote or escalated something."""
    action: VerdictAction
    """allow, redact, refuse or escalate."""
    reasons: list[str]
    """Why, in short machine-readable phrases (`code: detail`)."""
    fact_ids: list[str]
    """The facts the guard looked at."""
    step_id: str | None
    """The plan step concerned, if any."""
    turn: int
    """The request (turn) this verdict belongs to."""
    at: str
    """When the guard decided."""
    from_turn: NotRequired[dict[str, int]]
    """Orders the plan uses that the request did not name, each with the turn the same actor
    named it in (the plan guard's verdict)."""


class Event(TypedDict):
    """One recorded decision of the tool layer: an attempt, a retry, a breaker transition."""

    at: str
    """When it happened."""
    kind: str
    """attempt, retry, breaker, rejected, deadline, fallback, reconcile."""
    dependency: str | None
    """The dependency concerned (carrier, payments, model), if any."""
    thread_id: str | None
    """The request's thread."""
    step_id: str | None
    """The plan step that made the call, if any (its id names the request's turn)."""
    detail: dict[str, Any]
    """Attempt number, status code, reason, breaker states, and so on."""


class NodeSpan(TypedDict):
    """When a node that runs beside others (a worker) began and ended, by its own clock.

    A checkpoint only says when the slowest of a superstep's nodes was done.
    """

    node: str
    """The node."""
    step_id: str | None
    """The plan step it ran, if any."""
    start: str
    """When it began."""
    end: str
    """When it ended."""


class ErrorInfo(TypedDict):
    """Why a request ended without a full answer."""

    code: str
    """bad_input, not_found, refused, hop_limit, deadline, internal."""
    message: str
    """A sentence for a person."""


class ApprovalRequest(TypedDict):
    """What a human is asked to approve (the `interrupt()` value of the approval gate).

    An answer must name `digest`: it approves exactly this proposal, never one that took its
    place while the reviewer was reading. Besides these fields it carries what the worker shows
    a reviewer (a refund: `order_id`, `amount_cents`).
    """

    kind: str
    """What is asked (`refund_approval`)."""
    step_id: str
    """The step waiting for the decision."""
    summary: NotRequired[str]
    """One line for a person ("Refund $24.00 on order 1027")."""
    subject: NotRequired[str]
    """What the effect acts on (`order:1027`)."""
    order_id: NotRequired[int]
    """A refund's order."""
    amount_cents: NotRequired[int]
    """A refund's amount."""
    currency: str
    """ISO currency code."""
    limit_cents: int
    """The auto-approval limit."""
    reason: str
    """Why a human is asked (`above_limit: ...`, `amount_not_stated: ...`, ...), the first of
    `reasons`."""
    reasons: NotRequired[list[str]]
    """Every reason a human is asked (limits, cumulative limits, a likely duplicate)."""
    policy_version: str
    """The policy version the effect was checked against."""
    requested_by: Actor
    """Who asked for it."""
    requested_at: NotRequired[str]
    """When it was asked for."""
    digest: NotRequired[str]
    """`sha256:<hex>` of what is shown (the effect's key and terms, who asked, the policy
    version): an answer carries it back, so it binds to this proposal alone."""
    refused_answer: NotRequired[str]
    """Why the last answer sent was not taken (the proposal still waits)."""


class ApprovalDecision(TypedDict):
    """What the approval guard decided about a proposal."""

    decision: Literal["allow", "refuse", "rejected"]
    """allow: pay; refuse: policy forbids it; rejected: a human (or non-staff) said no."""
    reasons: list[str]
    """Why, citing the policy version where it applies."""
    approver: Actor | None
    """Who approved or rejected, when a human decided."""
    escalated: bool
    """Whether a human was asked."""
    decided_at: str
    """When the decision was taken."""


class Wording(TypedDict):
    """The statements as a drafter (a writing crew) worded them."""

    by: str
    """The drafter."""
    text: str
    """Its text: the output guard checks it as a whole, or the template's statements stand."""


class Draft(TypedDict):
    """The responder's answer, before the output guard."""

    statements: list[str]
    """Statements drawn from facts; each must be backed by a fact of this request."""
    notices: list[str]
    """Messages of our own (errors, help, what could not be checked); redacted, not grounded."""
    fixed: NotRequired[list[str]]
    """Statements no drafter may reword (what was done, offered or advised): they follow its
    wording as they are, as the notices do."""
    wording: NotRequired[Wording]
    """The other statements worded by a drafter, if one is configured and answered."""
    wording_error: NotRequired[str]
    """Why the drafter's wording is missing (unavailable, outside its contract)."""


class StepResult(TypedDict):
    """How one plan step ended, as the fact guard recorded it."""

    step_id: str
    """The step."""
    worker: str
    """The worker that ran it."""
    status: StepStatus
    """done, degraded, not_found, refused, failed or skipped."""
    fact_ids: list[str]
    """Facts this step established (after the fact guard)."""
    note: str
    """A short explanation for people."""


class WorkerReport(TypedDict):
    """What a worker subgraph hands back for one step; the fact guard decides what is kept."""

    step_id: str
    """The step the worker executed."""
    worker: str
    """The worker's name."""
    status: StepStatus
    """The worker's own view of the outcome."""
    facts: list[Fact]
    """Proposed facts; only those the worker owns and that validate are committed."""
    degraded: list[str]
    """Dependencies the worker could not reach."""
    note: str
    """A short explanation for people."""


def _fold_append(state: list[Any], writes: Sequence[list[Any] | None]) -> list[Any]:
    return [*state, *(item for write in writes for item in (write or []))]


def _fold_merge(state: dict[str, Any], writes: Sequence[dict[str, Any] | None]
                ) -> dict[str, Any]:
    merged = dict(state)
    for write in writes:
        merged.update(write or {})
    return merged


STUB_MARK = "interlock_stub"
"""`additional_kwargs` marker of the intake guard's stand-ins for messages it does not keep: the
only writes that may take the place of a message already in the conversation."""


def _fold_messages(state: list[Any], writes: Sequence[Any]) -> list[Any]:
    """The conversation: messages are appended; what is said stays said.

    A message whose id is already in the conversation does not replace it (a client resending
    its POST, or rewriting an earlier answer, changes nothing), except for the intake guard's
    stubs; `RemoveMessage` is ignored. `add_messages` would do both.
    """
    folded: list[Any] = list(convert_to_messages(state)) if state else []
    known = {m.id for m in folded if isinstance(m, BaseMessage) and m.id}
    for write in writes:
        items = write if isinstance(write, list) else [write]
        kept: list[Any] = []
        for message in convert_to_messages(items):
            if isinstance(message, RemoveMessage):
                continue
            if message.id in known and not message.additional_kwargs.get(STUB_MARK):
                continue
            kept.append(message)
        if kept:
            folded = list(add_messages(folded, kept))
            known.update(m.id for m in kept if m.id)
    return folded


# Channels that grow for the life of a thread keep only their new writes in each checkpoint
# (LangGraph's DeltaChannel, which replays ancestor writes on read and snapshots every 100
# updates): a checkpoint's size stays flat however long the conversation gets.
MESSAGES: DeltaChannel[list[Any]] = DeltaChannel(_fold_messages)
APPEND: DeltaChannel[list[Any]] = DeltaChannel(_fold_append)
MERGE: DeltaChannel[dict[str, Any]] = DeltaChannel(_fold_merge)


def merge_dicts(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """Reducer: right-biased merge of two dicts."""
    if not left:
        return dict(right or {})
    if not right:
        return left
    return {**left, **right}


def merge_inbox(
    left: list[WorkerReport] | None, right: list[WorkerReport] | None
) -> list[WorkerReport]:
    """Reducer for the worker inbox: append (the fact guard empties it with `Overwrite`)."""
    return [*(left or []), *(right or [])]


def _append(left: list[Any] | None, right: list[Any] | None) -> list[Any]:
    return [*(left or []), *(right or [])]


class SubjectOrder(TypedDict):
    """An order the thread is about, as one actor named it."""

    order_id: int
    """The order number."""
    by: str
    """Who named it: `staff` or `customer:<id>` (only they may refer back to it)."""
    first_turn: int
    """The turn it was first named in."""
    named_turn: int
    """The last turn it was named in (by its number, not referred back to)."""
    turn: int
    """The last turn it was named in or answered about."""
    said: list[str]
    """What answers said about it so far (fact kinds: order, shipment, refund, ...)."""


class SubjectAmount(TypedDict):
    """An amount an actor named: kept for the record, never carried into a refund."""

    amount_cents: int
    """The amount."""
    by: str
    """Who named it."""
    turn: int
    """The turn it was named in."""


class Offer(TypedDict):
    """Something the desk offered to do that the customer did not quite ask for.

    Only the next message of the same actor can confirm it ("yes", "go ahead"), only before
    it expires, and a confirmation still goes through the plan guard and the approval gate.
    """

    id: str
    """The plan step that made the offer (`t2.s3`)."""
    worker: str
    """The worker that would carry it out (`refunds`)."""
    order_id: int
    """The order it is about."""
    amount_cents: int
    """The amount offered."""
    currency: str
    """ISO currency code."""
    policy_version: str | None
    """The policy version it was checked against; a confirmation under another is refused."""
    by: str
    """Whom it was offered to (`customer:<id>` or `staff`)."""
    turn: int
    """The turn it was made in; only turn + 1 may confirm it."""
    made_at: str
    """When it was made."""
    expires_at: str
    """When it lapses."""
    summary: str
    """One line for a person ("Refund $39.00 on order 1012")."""
    thread: NotRequired[str]
    """The thread it was made in: a copy or fork of the thread cannot confirm it."""


class Subject(TypedDict):
    """What the thread is about, per actor (the `subject` state key)."""

    orders: list[SubjectOrder]
    """Orders named in the thread, least recent first."""
    amounts: list[SubjectAmount]
    """Amounts named in the thread (last few), for the record."""
    offer: Offer | None
    """The desk's open offer, if its last answer made one."""
    turn: int
    """The last turn that updated it."""


class InputState(TypedDict):
    """What callers may send: messages only. Actor, plan and facts are never accepted as input."""

    messages: Annotated[list[AnyMessage], MESSAGES]
    """The conversation; the last human message is the request."""


class InterlockState(TypedDict):
    """The supervisor graph's state."""

    messages: Annotated[list[AnyMessage], MESSAGES]
    """The conversation; the last AI message is the answer."""
    owner: NotRequired[Actor]
    """Who started the thread; a customer may only continue a thread they own."""
    origin: NotRequired[str]
    """The thread the conversation began in (a copy or fork keeps its original's)."""
    transcript_len: NotRequired[int]
    """How many messages the conversation had when the graph last finished with it: later
    ones are a new request's input, checked by the intake guard."""
    request: NotRequired[RequestInfo]
    """The current request, as the intake guard accepted it."""
    subject: NotRequired[Subject]
    """What the thread is about: the orders each actor named, with their turns, and the desk's
    open offer (written at the end of every turn, with the answer: `agents.conversation`)."""
    plan: NotRequired[Plan | None]
    """The current request's validated plan."""
    candidate_plan: NotRequired[Plan | None]
    """The planner's proposal, before the plan guard."""
    planner_fallback: NotRequired[str | None]
    """Why the model's plan could not be used (the rules planner stood in), if it could not."""
    dispatched: NotRequired[list[str]]
    """Steps of the current plan the supervisor has sent to workers."""
    refreshed: NotRequired[list[str]]
    """Steps of the current plan re-run because their facts went stale (at most once each)."""
    hops: NotRequired[int]
    """Supervisor hops in the current request; bounded by the hop limit."""
    inbox: NotRequired[Annotated[list[WorkerReport], merge_inbox]]
    """Worker reports waiting for the fact guard."""
    results: NotRequired[Annotated[dict[str, StepResult], MERGE]]
    """Outcome of each step of the thread, by step id."""
    facts: NotRequired[Annotated[dict[str, Fact], MERGE]]
    """Facts in force, by fact id; only the fact guard writes here."""
    advice_gaps: NotRequired[Annotated[dict[str, list[str]], merge_dicts]]
    """By order: advising steps of this thread that established nothing about it (a claims
    check that failed). A later side effect on the order (a "yes" to an offer) is decided
    knowing it, by a human."""
    verdicts: NotRequired[Annotated[list[Verdict], APPEND]]
    """Every guard verdict of the thread, in order."""
    events: NotRequired[Annotated[list[Event], APPEND]]
    """Every recorded tool-layer decision of the thread, in order."""
    spans: NotRequired[Annotated[list[NodeSpan], APPEND]]
    """When each worker step began and ended (`interlock trace` draws them)."""
    degraded: NotRequired[list[str]]
    """Dependencies the current request could not reach."""
    draft_answer: NotRequired[Draft | None]
    """The responder's answer before the output guard (cleared once the guard has run)."""
    status: NotRequired[Status]
    """Status of the current request."""
    error: NotRequired[ErrorInfo | None]
    """Why the current request ended early, if it did."""


class WorkerInput(TypedDict):
    """What the supervisor sends a worker (via `Send`): one step and what it may rely on."""

    step: PlanStep
    """The step to execute."""
    request: RequestInfo
    """The request, with its actor and deadline."""
    facts: dict[str, Fact]
    """Facts from the steps this step depends on (for `reconcile`: the step's own facts)."""
    mode: NotRequired[Literal["run", "reconcile"]]
    """`run` (default), or `reconcile`: settle an effect whose outcome was unknown."""
    unadvised: NotRequired[list[str]]
    """The advising steps (`PlanStep.advised_by`) that established nothing, and how they
    ended."""
    advice: NotRequired[dict[str, Fact]]
    """What the step's advisors said about its order in this thread (any turn)."""


class WorkerState(WorkerInput):
    """A worker subgraph's own state: its input, scratch space, and what it reports."""

    scratch: NotRequired[Annotated[dict[str, Any], merge_dicts]]
    """Private intermediate values of the worker's nodes."""
    inbox: NotRequired[Annotated[list[WorkerReport], merge_inbox]]
    """The worker's report (one per step)."""
    verdicts: NotRequired[Annotated[list[Verdict], _append]]
    """Verdicts of guards that run inside the worker (the approval guard)."""
    events: NotRequired[Annotated[list[Event], _append]]
    """Tool-layer events of the worker's calls."""


class WorkerOutput(TypedDict):
    """What a worker subgraph may write back to the supervisor graph: nothing else passes."""

    inbox: NotRequired[Annotated[list[WorkerReport], merge_inbox]]
    """The worker's report."""
    verdicts: NotRequired[Annotated[list[Verdict], _append]]
    """Verdicts of guards inside the worker."""
    events: NotRequired[Annotated[list[Event], _append]]
    """Tool-layer events of the worker's calls."""
