"""Plan helpers shared by planners and the plan guard: mentions in text, waves, cycles.

A leaf module like `graphs.state`: it imports nothing of ours but state and errors, so
agents and guards can both rely on one reading of "what did the request mention".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

from graphs.core.errors import InputError
from graphs.core.state import Fact, PlanStep, StepResult


def dependency_facts(step: PlanStep, results: Mapping[str, StepResult],
                     facts: Mapping[str, Fact]) -> dict[str, Fact]:
    """The facts of the steps `step` depends on (those reported so far): what it may rely on."""
    return {fid: facts[fid] for dep in step["depends_on"] if dep in results
            for fid in results[dep]["fact_ids"] if fid in facts}

__all__ = [
    "Mentions",
    "compute_waves",
    "dependency_facts",
    "find_cycle",
    "mentions",
]

# Money: "$25", "$ 1,200.50", "25 dollars", "25.00 USD". The captured text is validated after.
_MONEY = re.compile(
    r"(?:(?:\$|\busd\s)\s*(?P<pre>-?[\w.,]+)"
    r"|(?<![\w.,-])(?P<post>-?\d[\d.,]*)\s*(?:usd\b|dollars?\b|bucks\b))",
    re.IGNORECASE,
)
_VALID_MONEY = re.compile(r"^(?:\d{1,3}(?:,\d{3})+|\d{1,7})(?:\.\d{1,2})?$")
_NUMBER = re.compile(r"(?<![\w.$+-])#?(\d{3,9})(?![\w-]|\.\d)")
_CARD_LIKE = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
# A year after a month name or "in"/"since" ("in March 2024", "since 2023") is not an order.
_YEAR = re.compile(
    r"\b(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?|in|since|year|until)"
    r"\.?\s+(?:\d{1,2}(?:st|nd|rd|th)?,?\s+)?(?P<year>(?:19|20)\d{2})\b", re.IGNORECASE)
ORDER_MIN = 1000
"""Order numbers start at 1001; smaller numbers are not read as orders."""


class Mentions:
    """Order numbers and amounts a request mentions, each in order of first appearance."""

    __slots__ = ("amounts_cents", "order_ids")

    def __init__(self, order_ids: list[int], amounts_cents: list[int]) -> None:
        self.order_ids = order_ids
        self.amounts_cents = amounts_cents


def mentions(text: str) -> Mentions:
    """Read the order numbers and amounts in `text`; a malformed amount is an InputError."""
    amounts: list[int] = []
    money_spans: list[tuple[int, int]] = []
    for match in _MONEY.finditer(text):
        raw = match.group("pre") or match.group("post") or ""
        money_spans.append(match.span())
        amounts.append(_parse_amount(raw, match.group(0).strip()))
    money_spans.extend(m.span() for m in _CARD_LIKE.finditer(text))
    money_spans.extend(m.span("year") for m in _YEAR.finditer(text))
    order_ids: list[int] = []
    for match in _NUMBER.finditer(text):
        start = match.start()
        if any(a <= start < b for a, b in money_spans):
            continue
        value = int(match.group(1))
        if value >= ORDER_MIN and value not in order_ids:
            order_ids.append(value)
    return Mentions(order_ids, list(dict.fromkeys(amounts)))


def _parse_amount(raw: str, shown: str) -> int:
    cleaned = raw.rstrip(".,")
    # What is echoed back is cut short: a request is never repeated to its sender at length.
    echo = shown if len(shown) <= 24 else f"{shown[:20]}…"
    if not _VALID_MONEY.match(cleaned):
        raise InputError(f"I could not read the amount {echo!r}; write it like $25 or $25.50.",
                         field="amount")
    try:
        cents = int(Decimal(cleaned.replace(",", "")) * 100)
    except InvalidOperation:
        raise InputError(f"I could not read the amount {echo!r}.", field="amount") from None
    if cents <= 0:
        raise InputError(f"The amount {echo!r} must be more than zero.", field="amount")
    return cents


def find_cycle(steps: list[PlanStep]) -> list[str] | None:
    """A dependency cycle among `steps` (as a list of ids), or None."""
    graph = {s["id"]: list(s["depends_on"]) for s in steps}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in graph.get(node, []):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep in graph and state.get(dep) is None and (found := visit(dep)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in graph:
        if state.get(node) is None and (found := visit(node)):
            return found
    return None


def compute_waves(steps: list[PlanStep]) -> list[list[str]]:
    """Group steps into waves: each wave depends only on earlier waves (steps must be acyclic)."""
    level: dict[str, int] = {}
    remaining = {s["id"]: s for s in steps}
    while remaining:
        progressed = False
        for step_id, step in list(remaining.items()):
            if all(dep in level for dep in step["depends_on"]):
                level[step_id] = 1 + max((level[d] for d in step["depends_on"]), default=-1)
                del remaining[step_id]
                progressed = True
        if not progressed:
            raise ValueError(f"unresolvable dependencies among {sorted(remaining)}")
    waves: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for step in steps:
        waves[level[step["id"]]].append(step["id"])
    return waves
