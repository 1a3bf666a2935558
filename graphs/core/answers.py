"""How facts become an answer, and what an answer may claim: contracts between workers and guards.

A worker says how its facts read (`WorkerSpec.describe`), what a sentence may state that one of
its facts must back (`Ground`: an order number, a tracking number, an amount, an RMA number),
and which claims only an executed effect may make (`Claim`: "I refunded..."). The responder and
the output guard iterate over what the workers declared; neither names a fact kind.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from graphs.core.state import Draft, Fact

__all__ = ["MONEY", "AnswerContext", "Claim", "Ground", "cents_in", "fields_named", "money",
           "plural", "wordable"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerContext:
    """What a fact's description may look at besides the fact itself."""

    facts: Sequence[Fact]
    """Every fact of this request."""
    intents: Sequence[str]
    """What the planner recognised (`order_status`, `policy`, ...)."""

    def find(self, kind: str, **match: Any) -> Fact | None:
        """A fact of `kind` whose value has these fields, if there is one."""
        return next((f for f in self.facts if f["kind"] == kind and all(
            f["value"].get(k) == v for k, v in match.items())), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ground:
    """Something an answer may state that a fact of this request must back.

    `stated(sentence)` finds what a sentence states (normalised), `backed(fact)` what a fact
    backs; a sentence stating a value no fact backs is withheld by the output guard.
    """

    name: str
    """What is stated: `order`, `tracking`, `amount`, ..."""
    stated: Callable[[str], Iterable[str]]
    """The values a sentence states."""
    backed: Callable[[Fact], Iterable[str]]
    """The values a fact backs."""
    personal_looking: bool = False
    """Whether backed values look like personal data (a tracking number like a phone number):
    they are kept through redaction."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """A claim only an executed effect may make ("I refunded $10.00 on order 1012")."""

    name: str
    """What is claimed: `refund_made`, `return_opened`, ..."""
    pattern: re.Pattern[str]
    """Finds the claim in a sentence."""
    proven: Callable[[str, Sequence[Fact]], bool]
    """Whether this request's facts prove the claim made in the sentence."""
    problem: str = field(default="")
    """The verdict's reason when it is not proven."""


def fields_named(value: Any, suffix: str) -> Iterator[Any]:
    """Every value under a key ending in `suffix`, anywhere in `value`."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if str(key).endswith(suffix) and not isinstance(item, Mapping | list):
                yield item
            else:
                yield from fields_named(item, suffix)
    elif isinstance(value, list):
        for item in value:
            yield from fields_named(item, suffix)


def cents_in(value: Any) -> Iterator[int]:
    """Every integer amount (a `*_cents` field) in a fact's value."""
    for item in fields_named(value, "_cents"):
        if isinstance(item, int) and not isinstance(item, bool):
            yield item


_MONEY = re.compile(r"\$\s?(\d{1,3}(?:,\d{3})*|\d+)(?:\.(\d{2}))?")


def _stated_cents(sentence: str) -> Iterator[str]:
    for whole, frac in _MONEY.findall(sentence):
        yield str(int(whole.replace(",", "")) * 100 + int(frac or 0))


MONEY = Ground(name="amount", stated=_stated_cents,
               backed=lambda fact: (str(c) for c in cents_in(fact["value"])))
"""Dollar amounts: every one a sentence states must be an amount a fact holds."""


def money(cents: int, currency: str | None = "USD") -> str:
    """`$1,234.50` for USD, `1,234.50 EUR` otherwise."""
    return f"${cents / 100:,.2f}" if currency in (None, "USD") else f"{cents / 100:,.2f} {currency}"


def plural(count: int, noun: str) -> str:
    """`1 step`, `3 steps`: a count with its noun (regular plurals only)."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def wordable(draft: Draft) -> list[str]:
    """The statements a drafter may word: all but the `fixed` ones (said in our words)."""
    fixed = draft.get("fixed", [])
    return [s for s in draft["statements"] if s not in fixed]
