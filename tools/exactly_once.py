"""Exactly-once side effects, for any worker: note it, ask first if it may have landed, send it.

Every attempt is noted in the effects journal before it goes out, under the effect's
idempotency key. A retry that finds an earlier attempt (a run that died, resumed) first asks
the dependency what it knows (`ask`, a record for people), then sends again under the same key,
which the dependency answers with the effect it made instead of making a second one. What the
attempt leaves unknown (it may have landed: an earlier attempt, a key already used, an attempt
that timed out after going out) is reported as such, for reconciliation to settle later.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from graphs.core.state import Event
from tools.effects import SETTLED_NOTHING, EffectJournal
from tools.errors import DependencyError
from tools.governor import CallContext

__all__ = ["CLEAN_REFUSALS", "Outcome", "may_succeed_later", "perform", "went_out_unanswered"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome(Generic[T]):
    """How one attempt at an effect ended."""

    earlier: int
    """Attempts noted before this one."""
    result: T | None = None
    """What the dependency answered, when it did."""
    error: DependencyError | None = None
    """Why it failed, when it did."""
    unknown: bool = False
    """Whether it may have landed anyway (settle it later: ask, then retry the same key)."""


CLEAN_REFUSALS = frozenset({408, 429, 503})
"""Statuses a service answers *instead of* doing the work (it did not read the request in
time, it is throttling, it is unavailable): after one, nothing happened. A 503 counts only in
the service's own words (`unavailable`, its JSON error; a proxy's `upstream_unavailable` may
follow a request that went through). Any other failure of a request that went out (a timeout,
a lost connection, a 500, a gateway's 502 or 504) leaves the outcome unknown."""


def _clean(detail: dict[str, Any]) -> bool:
    status = detail.get("status")
    return status in CLEAN_REFUSALS and (status != 503 or detail.get("reason") == "unavailable")


def went_out_unanswered(events: Sequence[Event], dependency: str, action: str) -> bool:
    """Whether an attempt at `action` may have reached the dependency without an answer."""
    return any(e["kind"] == "attempt" and e["dependency"] == dependency
               and e["detail"].get("action") == action and e["detail"].get("outcome") == "error"
               and e["detail"].get("retryable") and not _clean(e["detail"]) for e in events)


def may_succeed_later(error: DependencyError) -> bool:
    """Whether an effect refused before it was attempted may go through later."""
    return error.retryable or error.reason in (
        "breaker_open", "bulkhead_full", "deadline", "retry_budget_exhausted", "timeout",
        "unavailable", "upstream_unavailable")


async def perform(journal: EffectJournal, key: str, *, dependency: str, action: str,
                  terms: dict[str, Any], ctx: CallContext, send: Callable[[], Awaitable[T]],
                  ask: Callable[[int], Awaitable[None]] | None = None,
                  ask_first: bool = False) -> Outcome[T]:
    """Note the attempt, ask first if an earlier one may have landed, send it under `key`.

    `send` makes the effect (idempotently under `key`); `ask(earlier)` asks the dependency
    what it knows, for the record, when an earlier attempt's outcome is unknown (`ask_first`:
    the caller knows it is). An earlier attempt that moved nothing (the service refused it
    cleanly: `failed` in the journal) needs no question. A 409 (the key used with
    other terms) counts as unknown.
    """
    earlier = 0
    unsettled = False
    try:
        earlier = await journal.begin(key, dependency=dependency, request=terms, ctx=ctx)
        if earlier and not ask_first:
            noted = await journal.entry(key, ctx)
            # How the attempt before this one ended (None: it never finished, or a journal
            # from before this was kept): only one that moved nothing needs no question.
            unsettled = (noted or {}).get("prior_outcome") not in SETTLED_NOTHING
        if ask is not None and (ask_first or unsettled):
            await ask(earlier)
        return Outcome(earlier=earlier, result=await send())
    except DependencyError as exc:
        unknown = (ask_first or unsettled or exc.status == 409
                   or went_out_unanswered(ctx.events, dependency, action))
        return Outcome(earlier=earlier, error=exc, unknown=unknown)
