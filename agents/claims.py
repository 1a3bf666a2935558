"""The claims worker: a damage or missing-item claim assessed by a remote team (AutoGen).

An extension module (`INTERLOCK_EXTENSIONS=agents.claims`, `INTERLOCK_CLAIMS_URL=<server>`):
the team runs in its own environment (`foreign/autogen/`, `make foreign`) and is reached as a
remote worker (`agents.remote`), with its own breaker, timeout, bulkhead and retry budget. For a
refund whose request claims damage or a missing item, a `claims` step assesses the claim from
the order's facts and the customer's words, and reports a `claim_assessment` fact: plausible,
needs_evidence or implausible, with reasons. It may only add caution: the refund's approval gate
sends a refund to a human on `needs_evidence` or `implausible` (`Caution`), or when the claim
could not be assessed (the team down, silent, or outside its contract), and nothing the team
says can approve a refund the policy refuses or the limits send to a human. A doubt stands for
the rest of the thread (a "yes" to an offer later is still decided with it).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from agents.remote import remote_worker
from agents.rules import RuleContext
from graphs.core.answers import AnswerContext
from graphs.core.effects import Caution, Proposal
from graphs.core.state import Fact, PlanStep
from tools.policy import DependencyPolicy

__all__ = ["CLAIMS", "ClaimAssessment", "DEPENDENCIES", "SPEC", "WORKERS"]

Verdict = Literal["plausible", "needs_evidence", "implausible"]
Reason = Annotated[str, StringConstraints(max_length=300)]


class ClaimAssessment(BaseModel):
    """The `claim_assessment` fact: what the claims team made of a claim on one order."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    order_id: int
    verdict: Verdict | None = None
    """None: the claim could not be assessed (the team was unavailable)."""
    reasons: list[Reason] = Field(default_factory=list, max_length=5)
    """The team's reasons, for the staff who review the refund (never shown to a customer)."""


_CLAIMED = re.compile(
    r"\b(?:damage[ds]?|broken|broke|cracked|smashed|shattered|dented|bent|scratched|chipped"
    r"|snapped|torn|ripped|crushed|busted|leak(?:ing|ed|s)?|defective|faulty|in pieces"
    r"|(?:doesn'?t|does not|didn'?t|did not|won'?t|isn'?t|is not|stopped) (?:work(?:ing)?"
    r"|turn(?:ing)? on"
    r"|power(?:ing)? on)"
    r"|not working|dead on arrival|missing|lost|stolen|incomplete"
    r"|never (?:arrived|came|got|received)|(?:not|wasn'?t|weren'?t) (?:received|delivered)"
    r"|(?:didn'?t|did not|never) (?:arrive|come|get|receive|show(?:ed)? up|turn(?:ed)? up)"
    r"|not in the (?:box|package|parcel)|unusable|(?:was|were|came|arrived) empty"
    r"|wrong (?:item|size|colou?r|product)|empty (?:box|package|parcel)"
    r"|only (?:got|received) (?:one|\d+))\b", re.IGNORECASE)
"""What a damage or loss claim says (the rules planner's trigger; a model's plan gets the same)."""


def rule(ctx: RuleContext) -> None:
    """A claims step for each refunded order, when the request claims damage or a loss.

    The plan guard makes the refund wait for it.
    """
    # Typographic apostrophes and compatibility forms read as plain ones ("didn’t").
    text = unicodedata.normalize("NFKC", ctx.text).replace("\u2019", "'").replace("\u2018", "'")
    if not _CLAIMED.search(text):
        return
    for order_id in ctx.found.order_ids:
        if ctx.step_of("refunds", order_id) is None or ctx.step_of("claims", order_id):
            continue  # no refund to advise, or planned already
        ctx.add("claims", order_id=order_id,
                depends_on=[s] if (s := ctx.step_of("orders", order_id)) else None)
        ctx.intent("claim")


_SAID = {
    "plausible": "Our claims team found your claim on order {id} plausible.",
    "needs_evidence": "Our claims team could not confirm your claim on order {id} without more "
                      "evidence, such as photos.",
    "implausible": "Our claims team could not confirm your claim on order {id} from the "
                   "order's records.",
    None: "I could not assess your claim on order {id} right now.",
}


def describe(fact: Fact, context: AnswerContext) -> str | None:
    """A fixed sentence per verdict: the team's own words never reach the customer."""
    value = fact["value"]
    return _SAID[value.get("verdict")].format(id=value["order_id"])


def _caution(fact: Fact, proposal: Proposal) -> str | None:
    value = fact["value"]
    verdict = value.get("verdict")
    if fact["kind"] != "claim_assessment" or verdict == "plausible":
        return None
    if proposal["subject"] != f"order:{value['order_id']}":
        return None
    if verdict is None:
        return (f"claim_unassessed: the claim on order {value['order_id']} could not be "
                f"assessed; a human decides")
    said = "; ".join(f'"{r}"' for r in value.get("reasons") or []) or "no reason given"
    return (f"claim_{verdict}: the claims team assessed the claim on order {value['order_id']} "
            f"as {verdict.replace('_', ' ')} (the team's own words, from the customer's "
            f"message: {said})")


def _unassessed(step: PlanStep) -> tuple[str, str, BaseModel]:
    order_id = int(step["order_id"] or 0)
    return "claim_assessment", str(order_id), ClaimAssessment(order_id=order_id)


CLAIMS, SPEC = remote_worker(
    name="claims", graph_id="claims",
    description="Assesses a damage or missing-item claim (an AutoGen team, remote).",
    owns={"claim_assessment": ClaimAssessment}, degraded_fact=_unassessed, needs_order=True,
    requires=("order",), rule=rule, describe=describe,
    # A team's conversation is several model calls: more time, one attempt (its model calls
    # are governed at the gateway, so a second attempt here would multiply them).
    policy=DependencyPolicy(timeout=20.0, attempts=1, fail_max=3),
    caution=Caution(effects=("refunds",), reason=_caution),
    produces=lambda step: [f"claim_assessment:{step['order_id']}"])
DEPENDENCIES = [CLAIMS]
WORKERS = [SPEC]
