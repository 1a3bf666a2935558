"""What a thread is about: the conversation subject, what refers back to it, offers and "yes".

A leaf module like `graphs.core.state`. The subject (`Subject`, kept in state under `subject`)
holds the orders each actor named in the thread, with the turn they came from, the amounts
they named (kept for the record, never carried into a refund), and at most one offer the desk
made ("I can refund up to $39.00 on order 1012") that the next message may confirm. The
planner and the plan guard read it through the same functions, so "it" means the same thing
to both, and nothing resolves to an order another actor named.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from graphs.core.clock import iso, parse_iso
from graphs.core.plans import mentions
from graphs.core.state import Offer, Subject, SubjectAmount, SubjectOrder

__all__ = [
    "MAX_ORDERS",
    "Offer",
    "Resolution",
    "Subject",
    "SubjectAmount",
    "SubjectOrder",
    "candidates",
    "empty_subject",
    "is_confirmation",
    "is_counter_offer",
    "make_offer",
    "offer_problem",
    "refers_to_several",
    "remember",
    "resolve",
]

MAX_ORDERS = 8
"""Most orders a subject keeps (the most recently named); older ones drop out."""


def empty_subject() -> Subject:
    """A thread that is about nothing yet."""
    return Subject(orders=[], amounts=[], offer=None, turn=0)


# Whole-message confirmations only: "yes", "yes please", "ok, go ahead", "do it", "confirm".
# Anything more ("yes but $20", "yes, and cancel it", "no thanks") is not a confirmation.
_AFFIRM_PHRASES = re.compile(
    r"\b(?:go ahead|go for it|do it|do that|please do|sounds good|lets do it|let's do it"
    r"|i confirm|that's fine|thats fine|that works|yes please)\b")
_AFFIRM = frozenset({"yes", "yeah", "yep", "yup", "sure", "ok", "okay", "alright", "confirm",
                     "confirmed", "proceed", "agreed"})
_FILLER = frozenset({"please", "thanks", "thank", "you", "thx", "great", "perfect", "fine",
                     "then", "just", "so", "and", "oh", "well", "right", "cheers"})
# Several orders at once, said so plainly: "both", "all of my orders", "these two". A bare
# "them" or "either" ("I asked them twice") is not a reference to orders.
_SEVERAL = re.compile(r"\bboth\b|\ball (?:of )?(?:my|the|these|those) orders\b"
                      r"|\b(?:these|those|the|my) (?:two|orders)\b|\beach of (?:them|my orders)\b",
                      re.IGNORECASE)
# What a confirmation may be written with: lower-case Latin letters, apostrophes, spaces,
# commas, full stops and exclamation marks. A question mark, a digit or another script's word
# ("yes?", "ok, не надо") is not a plain yes.
_PLAIN = re.compile(r"^[a-z' ,.!]+$")
# A yes that asks for something to happen, not a courtesy ("ok thanks").
_CONSENT = re.compile(r"\b(?:yes|yeah|yep|yup|confirm(?:ed)?|proceed|agreed)\b"
                      r"|\bgo ahead\b|\bgo for it\b|\bdo (?:it|that)\b|\bplease do\b")


def is_confirmation(text: str) -> bool:
    """Whether the whole message confirms something ("yes", "go ahead", "do it").

    A word of consent ("yes", "confirm", "go ahead", "do it"), and besides it nothing but
    affirmations and courtesies: no number, no question, no negation, no other ask.
    """
    said = " ".join(text.casefold().split())
    if len(said) > 80 or not _PLAIN.match(said):
        return False
    rest = _AFFIRM_PHRASES.sub(" ", said)
    words = re.findall(r"[a-z']+", rest)
    # Consent, not a courtesy: "ok thanks" or "sure" after an offer is not a yes to it.
    return bool(_CONSENT.search(said)) and all(w in _AFFIRM or w in _FILLER for w in words)


_AMOUNT = re.compile(r"(?:\$|\busd\s)\s*[\d.,]+|\b[\d][\d.,]*\s*(?:usd|dollars?|bucks)\b",
                     re.IGNORECASE)
_COUNTER_WORDS = frozenset({
    "no", "nope", "just", "only", "please", "then", "instead", "make", "it", "how", "about",
    "yes", "yeah", "but", "ok", "okay", "thanks", "thank", "you", "rather", "actually", "maybe",
    "can", "could", "do", "i'd", "i", "would", "like", "want", "prefer", "refund", "me", "that",
    "a", "the", "let's", "say", "go", "with", "sure", "fine", "well", "hmm", "um", "so"})


def is_counter_offer(text: str) -> bool:
    """Whether the message only names an amount in place of an offer's ("no, just $5 please").

    "I paid $39 for it" or "what is $5 in euros?" say something else: they are not.
    """
    rest = _AMOUNT.sub(" ", " ".join(text.casefold().split()))
    if len(rest) > 80 or not re.fullmatch(r"[a-z' ,.!?]*", rest):
        return False
    return all(w in _COUNTER_WORDS for w in re.findall(r"[a-z']+", rest))


def refers_to_several(text: str) -> bool:
    """Whether the message refers back to several orders at once ("both", "all my orders")."""
    return bool(_SEVERAL.search(text))


def candidates(subject: Subject | None, by: str) -> list[SubjectOrder]:
    """The orders `by` named in the thread, most recent first (nobody else's)."""
    if not subject:
        return []
    mine = [o for o in subject.get("orders", []) if o.get("by") == by]
    return sorted(mine, key=lambda o: o["turn"], reverse=True)


def offer_problem(offer: Offer | None, *, by: str, turn: int, now: datetime,
                  thread: str | None = None) -> str | None:
    """Why `offer` cannot be confirmed by `by` in `turn` at `now` in `thread` (None: it can)."""
    if offer is None or offer["by"] != by:
        return "nothing_to_confirm: there is no offer waiting for your confirmation"
    if offer.get("thread") and thread and offer["thread"] != thread:
        return (f"offer_elsewhere: the offer of turn {offer['turn']} ({offer['summary']}) was "
                f"made in the conversation this one was copied or forked from")
    if offer["turn"] != turn - 1:
        return (f"offer_lapsed: the offer of turn {offer['turn']} ({offer['summary']}) held for "
                f"the next message only")
    if now > parse_iso(offer["expires_at"]):
        return (f"offer_expired: the offer of turn {offer['turn']} ({offer['summary']}) "
                f"expired at {offer['expires_at'][11:16]} UTC")
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Resolution:
    """What a message refers back to in the subject (for the planner and the plan guard)."""

    order_ids: tuple[int, ...] = ()
    """Earlier orders the message is about, though it names none (empty if it names one)."""
    from_turn: dict[int, int] = field(default_factory=dict)
    """For each of those, the turn it came from."""
    ambiguous: tuple[int, ...] = ()
    """Orders it could mean when more than one fits: a question back, never a guess."""
    confirms: Offer | None = None
    """The offer the message confirms, if it confirms one that stands."""
    refusal: str | None = None
    """Why a confirmation cannot be taken (`offer_expired: ...`), if it is one."""
    open_offer: Offer | None = None
    """The standing offer the message answers with an amount of its own ("no, just $5
    please"): a refund of that amount on the offer's order (see `is_counter_offer`)."""


def resolve(text: str, subject: Subject | None, *, by: str, turn: int, now: datetime,
            thread: str | None = None) -> Resolution:
    """What `text`, sent by `by` in `turn`, refers back to (an InputError for a bad amount).

    A message that names an order refers back to nothing. A confirmation refers to the open
    offer (if it still stands), and an amount in answer to it asks for that amount on its
    order. Otherwise the orders `by` named earlier are candidates: one is what the message is
    about; several are a question back, unless it says "both" or "all my orders".
    """
    if is_confirmation(text):
        offer = subject.get("offer") if subject else None
        if problem := offer_problem(offer, by=by, turn=turn, now=now, thread=thread):
            return Resolution(refusal=problem)
        assert offer is not None
        return Resolution(order_ids=(offer["order_id"],), confirms=offer,
                          from_turn={offer["order_id"]: offer["turn"]})
    offer = subject.get("offer") if subject else None
    standing = offer if offer_problem(offer, by=by, turn=turn, now=now,
                                      thread=thread) is None else None
    said = mentions(text)
    if said.order_ids:
        return Resolution()
    if standing is not None and len(said.amounts_cents) == 1 and is_counter_offer(text):
        return Resolution(order_ids=(standing["order_id"],), open_offer=standing,
                          from_turn={standing["order_id"]: standing["turn"]})
    found = candidates(subject, by)
    if len(found) == 1 or (found and refers_to_several(text)):
        return Resolution(order_ids=tuple(o["order_id"] for o in found),
                          from_turn={o["order_id"]: o.get("named_turn", o["turn"])
                                     for o in found})
    return Resolution(ambiguous=tuple(o["order_id"] for o in found))


def make_offer(*, step_id: str, worker: str, order_id: int, amount_cents: int, currency: str,
               policy_version: str | None, summary: str, by: str, turn: int, now: datetime,
               ttl_s: float, thread: str | None) -> Offer:
    """An offer made now in `thread`, for `ttl_s` seconds."""
    offer = Offer(id=step_id, worker=worker, order_id=order_id, amount_cents=amount_cents,
                  currency=currency, policy_version=policy_version, by=by, turn=turn,
                  made_at=iso(now), expires_at=iso(now + timedelta(seconds=ttl_s)),
                  summary=summary)
    if thread:
        offer["thread"] = thread
    return offer


def remember(subject: Subject | None, *, turn: int, by: str,
             answered: dict[int, list[str]], named: Collection[int], amounts: list[int],
             offer: Offer | None) -> Subject:
    """The subject after `turn`: the orders `by` was answered about, and the new offer.

    `answered` maps each order this turn was about (named, or referred back to) to the fact
    kinds its answer carried; `named` are those the request named by number. An offer lasts
    one turn: the next one replaces or drops it.
    """
    known = {(o["by"], o["order_id"]): o for o in (subject or empty_subject()).get("orders", [])}
    for order_id, kinds in answered.items():
        was = known.pop((by, order_id), None)
        known[(by, order_id)] = SubjectOrder(
            order_id=order_id, by=by, first_turn=was.get("first_turn", turn) if was else turn,
            named_turn=turn if order_id in named or was is None
            else was.get("named_turn", was["turn"]),
            turn=turn, said=sorted({*(was.get("said", []) if was else []), *kinds}))
    orders = sorted(known.values(), key=lambda o: o["turn"])[-MAX_ORDERS:]
    said = list((subject or empty_subject()).get("amounts", []))
    said += [new for a in amounts if (new := SubjectAmount(amount_cents=a, by=by, turn=turn))
             not in said]  # a turn remembered again (a resumed run) adds nothing twice
    return Subject(orders=orders, amounts=said[-MAX_ORDERS:], offer=offer, turn=turn)
