"""Freshness rules: how long a fact may be used before it must be checked again.

A leaf module like `graphs.state`. Each fact kind has a time-to-live from settings
(`INTERLOCK_FACT_TTL`); a kind with no TTL stays valid until superseded: a policy fact while
its version is in effect at the request's time, a refund's outcome for good.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from graphs.core.clock import parse_iso
from graphs.core.state import Actor, Fact

__all__ = ["scope_of", "staleness"]


def scope_of(actor: Actor) -> str:
    """Whose view a fact is: `staff`, or `customer:<id>` (facts are never shared across)."""
    return "staff" if actor["kind"] == "staff" else f"customer:{actor['customer_id']}"


def staleness(fact: Fact, *, now: datetime, request_at: datetime,
              ttls: Mapping[str, float | None]) -> str | None:
    """Why `fact` may not be used for a request made at `request_at` (None: it is fresh)."""
    ttl = ttls.get(fact["kind"])
    if not fact["value"].get("found", True) and fact["kind"] == "policy":
        return f"{fact['id']}: no policy was in effect; check again"
    if ttl is not None:
        age = (now - parse_iso(fact["as_of"])).total_seconds()
        return None if age <= ttl else f"{fact['id']} is {age:.0f}s old (ttl {ttl:.0f}s)"
    if fact["kind"] == "policy" and fact["value"].get("found"):
        starts, ends = fact["value"].get("effective_from"), fact["value"].get("effective_to")
        if starts and parse_iso(starts) > request_at or ends and parse_iso(ends) <= request_at:
            return f"{fact['id']} version {fact.get('version')} is not in effect at {request_at}"
    return None
