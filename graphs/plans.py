"""The earlier home of `graphs.core.plans` (kept so existing imports work)."""

from graphs.core.plans import (
    Mentions,
    compute_waves,
    find_cycle,
    mentions,
)

__all__ = ["Mentions", "compute_waves", "find_cycle", "mentions"]
