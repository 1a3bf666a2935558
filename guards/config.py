"""What the guards read of the settings (a protocol: the assembly's `Settings` fits it)."""

from __future__ import annotations

from typing import Protocol

__all__ = ["GuardSettings"]


class GuardSettings(Protocol):
    """The limits the guards apply."""

    @property
    def deadline_s(self) -> float:
        """End-to-end deadline of one request."""

    @property
    def max_steps(self) -> int:
        """Most steps in a plan."""

    @property
    def max_side_effects(self) -> int:
        """Most side-effecting steps in one request."""

    @property
    def max_input_messages(self) -> int:
        """Most messages one request may carry."""

    @property
    def max_input_bytes(self) -> int:
        """Most bytes of text all of a request's messages carry."""

    @property
    def auto_approve_cents(self) -> int:
        """Above this a refund waits for a human."""

    @property
    def auto_approve_order_cents(self) -> int:
        """Most refunded or asked for on one order in the window without a human."""

    @property
    def auto_approve_customer_cents(self) -> int:
        """The same, over all of one customer's orders."""

    @property
    def approval_window_s(self) -> float:
        """The window those sums are counted over."""

    @property
    def duplicate_window_s(self) -> float:
        """The same refund again within this window is a likely duplicate (0: off)."""
