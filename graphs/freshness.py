"""The earlier home of `graphs.core.freshness` (kept so existing imports work)."""

from graphs.core.freshness import (
    scope_of,
    staleness,
)

__all__ = ["scope_of", "staleness"]
