"""The workers of the reference domain; `build_graph(workers=...)` accepts any other list."""

from __future__ import annotations

from agents import orders, policy, refunds, shipping
from agents.base import WorkerSpec

__all__ = ["DEFAULT_WORKERS"]

DEFAULT_WORKERS: tuple[WorkerSpec, ...] = (orders.SPEC, shipping.SPEC, policy.SPEC, refunds.SPEC)
"""Orders, shipping, policy and refunds, in the order the README lists them."""
