"""The approval gate: before any side effect, the worker's policy, the limits and a human's word.

Any side-effecting worker places it between proposing and acting (`scratch.proposal`, a
`Proposal`); the worker's `EffectRules` say what its policy forbids and what to check again
after a human decided. For a proposal:

- what the worker's policy forbids -> refused, citing the policy version;
- above `INTERLOCK_AUTO_APPROVE_CENTS`, or with what was already done or asked for on its
  subject (the order) or for its principal (the customer) in the approval window above its
  limit, or the same amount on the same subject again within the duplicate window, or no
  amount stated -> `interrupt()` for a human (support staff only); the interrupt lives in
  the checkpoint, so it survives a restart and resumes right here;
- a proposal an advising worker's fact cautions against (`Caution`: a claims team that doubts
  the claim) -> a human, like a limit; an advisor can only add caution, never allow what the
  policy refuses or a limit sends to a human;
- otherwise -> allowed automatically.

The limits are counted on the effects journal in one transaction with noting the proposal,
so requests racing each other cannot both slip under a limit. An answer must carry the digest
of the proposal it approves: an answer to anything else (a proposal that took its place, one
no longer pending) is not taken, nothing of it is saved, and the proposal keeps waiting with
the reason in `refused_answer`. A re-run, replay, fork or copy of an effect already made under
the same key moves nothing again: it is allowed without asking, unless a human had to approve
it the first time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, Self, cast

from langgraph.config import get_config
from langgraph.errors import GraphInterrupt
from langgraph.runtime import Runtime
from langgraph.types import Interrupt, interrupt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from graphs.core.actors import is_staff, resolve_actor
from graphs.core.answers import money
from graphs.core.clock import Clock, iso, parse_iso
from graphs.core.effects import Caution, EffectRules, Proposal
from graphs.core.state import (
    ApprovalDecision,
    ApprovalRequest,
    Event,
    InterlockContext,
    Verdict,
    WorkerState,
)
from guards.config import GuardSettings
from tools.effects import Exposure
from tools.effects import Proposal as Noted
from tools.governor import CallContext
from tools.spans import thread_of
from tools.toolbox import Toolbox

__all__ = ["Advisor", "ApprovalAnswer", "answer_schema", "approval_digest", "caution_reasons",
           "limit_reasons", "make_approval_guard"]

GUARD = "approval"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:g} h"


def _named(subject: str) -> str:
    return subject.replace(":", " ", 1)


def limit_reasons(p: Proposal, exposure: Exposure, settings: GuardSettings) -> list[str]:
    """Why this effect needs a human (empty: it may be approved automatically).

    `exposure` is what the journal knows of the subject's and the principal's other effects in
    the window; the subject's effects the system of record made without the journal (another
    system, a person) are added from `p["recent"]`.
    """
    cur = p["currency"]
    amount = p["impact_cents"]
    subject = _named(p["subject"])
    reasons: list[str] = []
    if amount > settings.auto_approve_cents:
        reasons.append(f"above_limit: {money(amount, cur)} is above the auto-approval limit of "
                       f"{money(settings.auto_approve_cents, cur)}")
    if not p["amount_stated"]:
        reasons.append(f"amount_not_stated: the request named no amount; a human confirms the "
                       f"full {money(amount, cur)}")
    known = set(exposure.known_results)
    external = [r for r in p["recent"] if r["id"] not in known]
    requested = parse_iso(p["requested_at"])
    since = requested - timedelta(seconds=settings.approval_window_s)
    on_subject = exposure.subject_cents + sum(int(r["impact_cents"]) for r in external
                                              if parse_iso(r["at"]) >= since)
    window = _hours(settings.approval_window_s)
    if on_subject + amount > settings.auto_approve_order_cents:
        earlier = (f"{money(on_subject, cur)} was already done or asked for on {subject} in the "
                   f"last {window}; with {money(amount, cur)} that is "
                   f"{money(on_subject + amount, cur)}," if on_subject
                   else f"{money(amount, cur)} on {subject} is")
        reasons.append(f"order_limit: {earlier} above the "
                       f"{money(settings.auto_approve_order_cents, cur)} allowed on one "
                       f"{p['subject'].split(':')[0] or 'subject'} in {window} without a human")
    principal_cents = exposure.principal_cents
    if p["principal"] and principal_cents + amount > settings.auto_approve_customer_cents:
        earlier = (f"{money(principal_cents, cur)} was already done or asked for for "
                   f"{_named(p['principal'])} in the last {window}; with {money(amount, cur)} "
                   f"that is {money(principal_cents + amount, cur)}," if principal_cents
                   else f"{money(amount, cur)} for {_named(p['principal'])} is")
        reasons.append(f"customer_limit: {earlier} above the "
                       f"{money(settings.auto_approve_customer_cents, cur)} allowed in "
                       f"{window} without a human")
    if settings.duplicate_window_s > 0:
        since = requested - timedelta(seconds=settings.duplicate_window_s)
        twins = [f"{r['id']} at {r['at'][:16]}" for r in external
                 if int(r["impact_cents"]) == amount and parse_iso(r["at"]) >= since]
        twins += [f"{'one made' if d['outcome'] == 'executed' else 'one asked for'} at "
                  f"{d['at'][:16]}" for d in exposure.duplicates]
        if twins:
            reasons.append(f"likely_duplicate: {money(amount, cur)} on {subject} was already "
                           f"done or asked for ({'; '.join(twins[:3])}); a human confirms this "
                           f"is a new request")
    return reasons


@dataclass(frozen=True, slots=True)
class Advisor:
    """A worker whose facts may caution against this gate's proposals (`WorkerSpec.caution`)."""

    worker: str
    caution: Caution


def caution_reasons(p: Proposal, facts: Mapping[str, Any], advisors: Sequence[Advisor]
                    ) -> dict[str, str]:
    """Why advisors' facts send this proposal to a human, by fact id (empty: none cautions).

    Only facts the fact guard accepted from the advisor itself count (`facts`: what the step
    was given from the steps it waited for, and what its advisors said about its order earlier
    in the thread).
    """
    reasons: dict[str, str] = {}
    for advisor in advisors:
        for fid, fact in facts.items():
            if fact.get("worker") == advisor.worker and (
                    why := advisor.caution.reason(fact, p)):
                reasons[fid] = f"caution: {why}"
    return reasons


def approval_digest(request: ApprovalRequest, key: str) -> str:
    """`sha256:<hex>` of what a reviewer approves: the effect (its key and terms) and who asked.

    The reasons are not part of it: their figures may move while the proposal waits, and what
    moved is checked again once a human has answered.
    """
    shown = {k: v for k, v in request.items() if k not in (
        "reason", "reasons", "limit_cents", "requested_at", "digest", "refused_answer")}
    body = json.dumps({**shown, "key": key}, sort_keys=True, separators=(",", ":"),
                      default=str)
    return f"sha256:{hashlib.sha256(body.encode()).hexdigest()}"


class ApprovalAnswer(BaseModel):
    """A reviewer's answer to one approval request (the interrupt's `response_schema`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    approved: bool
    """Whether the effect may be made."""
    note: str = Field(default="", max_length=500)
    """A note for the record."""
    digest: str = Field(max_length=80)
    """The digest of the proposal answered (from the interrupt's value)."""
    expected: ClassVar[str] = ""
    by_staff: ClassVar[bool] = False

    @model_validator(mode="after")
    def _bound(self) -> Self:
        if not self.by_staff:
            raise ValueError("approver_not_staff: only support staff may answer an approval")
        if self.digest != self.expected:
            raise ValueError(f"stale_answer: the answer names proposal {self.digest[:19]}…, "
                             f"but the proposal waiting is {self.expected[:19]}…; read the "
                             f"thread's interrupts and answer the one you reviewed")
        return self


def answer_schema(digest: str, *, by_staff: bool) -> type[ApprovalAnswer]:
    """The answer schema of one proposal: its digest, and whether the answering run is staff's."""
    schema: type[ApprovalAnswer] = type("ApprovalAnswer", (ApprovalAnswer,),
                                        {"expected": digest, "by_staff": by_staff,
                                         "__module__": __name__})
    return schema


def _why(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0] if errors else {"msg": str(exc), "loc": ()}
    where = ".".join(str(p) for p in first.get("loc", ()))
    message = str(first.get("msg", "")).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _ask(request: ApprovalRequest, runtime: Runtime[InterlockContext]) -> ApprovalAnswer:
    """Ask a human; an answer that is not for this proposal is not taken.

    A refused answer is never saved (LangGraph validates it against `response_schema` before
    it records anything), and the same interrupt is raised again with the reason, so the
    proposal keeps waiting under the same id for an answer that names it.
    """
    schema = answer_schema(request["digest"], by_staff=is_staff(resolve_actor(runtime)))
    try:
        answer: ApprovalAnswer = interrupt(request, response_schema=schema)
    except ValidationError as exc:
        namespace = str(get_config()["configurable"].get("checkpoint_ns", ""))
        again = ApprovalRequest(**{**request, "refused_answer": _why(exc)})
        raise GraphInterrupt((Interrupt.from_ns(
            again, namespace, response_schema=schema.model_json_schema()),)) from None
    return answer


def _request(proposal: Proposal, reasons: Sequence[str], settings: GuardSettings
             ) -> ApprovalRequest:
    values: dict[str, Any] = {
        **proposal["shown"], "kind": proposal["kind"], "step_id": proposal["step_id"],
        "summary": proposal["summary"], "subject": proposal["subject"],
        "currency": proposal["currency"], "limit_cents": settings.auto_approve_cents,
        "reason": reasons[0] if reasons else "escalated: decided earlier to ask a human",
        "reasons": [*reasons, *([proposal["confirmed"]] if proposal.get("confirmed") else [])],
        "policy_version": proposal["policy_version"] or "",
        "requested_by": proposal["requested_by"], "requested_at": proposal["requested_at"]}
    request = cast(ApprovalRequest, values)
    request["digest"] = approval_digest(request, proposal["key"])
    return request


# The keys every proposal of today's shape has. Under postponed annotations TypedDict counts a
# `NotRequired` key as required, so the annotations are read instead.
_SHAPE = frozenset(k for k, hint in Proposal.__annotations__.items()
                   if "NotRequired[" not in str(hint))


def _current(held: Mapping[str, Any], request: Mapping[str, Any], rules: EffectRules
             ) -> Proposal | None:
    """The proposal in today's shape: as held, or read by the worker's `upgrade`."""
    if _SHAPE <= held.keys():
        return cast(Proposal, held)
    return rules.upgrade(held, request) if rules.upgrade is not None else None


def make_approval_guard(settings: GuardSettings, clock: Clock, toolbox: Toolbox,
                        rules: EffectRules, advisors: Sequence[Advisor] = ()) -> Any:
    """The approval gate node of one side-effecting worker (`scratch.proposal`), by its rules.

    `advisors`: the workers whose facts may send its proposals to a human (never allow one).

    After a human decision (which may come hours later) it asks the worker's re-check what
    changed before allowing the effect: what was true when the human was asked may not be
    true any more.
    """

    async def approval_guard(state: WorkerState, runtime: Runtime[InterlockContext]
                             ) -> dict[str, Any]:
        turn = state["request"]["turn"]
        held = state["scratch"]["proposal"]
        upgraded = _current(held, state["request"], rules)
        if upgraded is None:  # an earlier version's proposal that cannot be read safely
            step = str(held.get("step_id", ""))
            decision = ApprovalDecision(
                decision="refuse", approver=None, escalated=False, decided_at=iso(clock.now()),
                reasons=["unreadable_proposal: this proposal was made by an earlier version "
                         "and cannot be checked now; nothing was moved, ask again"])
            return {"scratch": {"approval": decision}, "verdicts": [Verdict(
                guard=GUARD, passed=False, action="refuse", reasons=decision["reasons"],
                fact_ids=[], step_id=step or None, turn=turn, at=decision["decided_at"])]}
        proposal: Proposal = upgraded
        step_id = proposal["step_id"]
        key = proposal["key"]
        fact_ids = list(proposal["facts"])
        fresh_deadline = clock.now() + timedelta(seconds=settings.deadline_s)
        ctx = CallContext.until(fresh_deadline, clock, step_id=step_id,
                                thread_id=thread_of(runtime))
        escalated = False
        verdicts: list[Verdict] = []
        made = await toolbox.effects.entry(key, ctx)
        # A re-run, replay, fork or copy of an effect already made: the same key gets the
        # original back from the dependency, and nothing moves again. What a human had to
        # approve the first time is put to a human again; nothing else is asked.
        already = made is not None and made["outcome"] == "executed"
        if already and made is not None and made["decision"] != "escalate":
            made_as = (made.get("result") or {}).get("refund_id") or made["key"]
            decision = ApprovalDecision(
                decision="allow", approver=None, escalated=False, decided_at=iso(clock.now()),
                reasons=[f"already_made: this effect was made before under the same key "
                         f"({made_as}); the dependency returns it and nothing moves again"])
        elif not already and (reasons := rules.problems(proposal)):
            decision = ApprovalDecision(
                decision="refuse", reasons=reasons, approver=None, escalated=False,
                decided_at=iso(clock.now()))
        else:
            cautions = caution_reasons(
                proposal, {**state.get("advice", {}), **state.get("facts", {})}, advisors)
            unadvised = [f"caution: no_advice: {u}; the advice this effect waits for is "
                         f"missing, so a human decides" for u in state.get("unadvised", [])]
            exposure, label = await toolbox.effects.propose(
                Noted(key=key, dependency=proposal["effect"], effect_id=proposal["effect_id"],
                      subject=proposal["subject"], principal=proposal["principal"] or "",
                      impact_cents=proposal["impact_cents"],
                      request=dict(proposal["terms"])),
                window_s=settings.approval_window_s,
                duplicate_window_s=settings.duplicate_window_s,
                decide=lambda seen: "escalate" if cautions or unadvised or limit_reasons(
                    proposal, seen, settings) else "auto", ctx=ctx)
            if label == "escalate":
                escalated = True
                request = _request(proposal, [*limit_reasons(proposal, exposure, settings),
                                              *cautions.values(), *unadvised], settings)
                verdicts.append(Verdict(
                    guard=GUARD, passed=False, action="escalate",
                    reasons=list(request.get("reasons") or [request["reason"]]),
                    fact_ids=[*fact_ids, *cautions], step_id=step_id, turn=turn,
                    at=proposal["requested_at"]))
                answer = _ask(request, runtime)
                approver = resolve_actor(runtime)
                # A human decision starts a fresh deadline for the re-check and the effect.
                fresh_deadline = clock.now() + timedelta(seconds=settings.deadline_s)
                ctx.events.append(Event(
                    at=iso(clock.now()), kind="decision", dependency=None,
                    thread_id=thread_of(runtime), step_id=step_id,
                    detail={"answer": answer.model_dump(), "approver": approver,
                            "digest": request["digest"]}))
                note = f": {answer.note}" if answer.note else ""
                decision = ApprovalDecision(
                    decision="allow" if answer.approved else "rejected", approver=approver,
                    escalated=True, decided_at=iso(clock.now()),
                    reasons=[("approved_by_staff" if answer.approved else "rejected_by_staff")
                             + note])
                if answer.approved and not already:
                    check = CallContext.until(fresh_deadline, clock, step_id=step_id,
                                              thread_id=thread_of(runtime))
                    problems = await rules.recheck(proposal, toolbox, check)
                    ctx.events.extend(check.events)
                    if problems:
                        decision = ApprovalDecision(
                            decision="refuse", approver=approver, escalated=True,
                            decided_at=iso(clock.now()),
                            reasons=[f"changed_while_waiting: {p}" for p in problems])
            else:
                decision = ApprovalDecision(
                    decision="allow", approver=None, escalated=False,
                    decided_at=iso(clock.now()),
                    reasons=[f"auto_approved: within the "
                             f"{money(settings.auto_approve_cents, proposal['currency'])} "
                             f"limit, the limits of {_named(proposal['subject'])} and its "
                             f"customer for the last {_hours(settings.approval_window_s)}"
                             + (f", and policy {proposal['policy_version']}"
                                if proposal["policy_version"] else "")])
            if decision["decision"] != "allow" and not already:  # moved nothing: not counted
                await toolbox.effects.finish(
                    key, "rejected" if decision["decision"] == "rejected" else "refused")
        confirmed = [proposal["confirmed"]] if proposal.get("confirmed") else []
        verdicts.append(Verdict(
            guard=GUARD, passed=decision["decision"] == "allow",
            action="allow" if decision["decision"] == "allow" else "refuse",
            reasons=[*decision["reasons"], *confirmed], fact_ids=fact_ids, step_id=step_id,
            turn=turn, at=decision["decided_at"]))
        scratch: dict[str, Any] = {"approval": decision}
        if upgraded is not held:  # the worker goes on with the proposal as read now
            scratch["proposal"] = proposal
        if escalated:
            scratch["deadline_at"] = iso(fresh_deadline)
        return {"scratch": scratch, "verdicts": verdicts, "events": ctx.events}

    return approval_guard
