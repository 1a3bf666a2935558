"""Injectable, UTC-aware time (defined in `graphs.core.clock`, re-exported here)."""

from graphs.core.clock import Clock, FakeClock, iso, parse_iso

__all__ = ["Clock", "FakeClock", "iso", "parse_iso"]
