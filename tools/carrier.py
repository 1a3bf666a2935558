"""Carrier tracking client (httpx), against the contract in ENGINEERING.md."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from graphs.core.clock import Clock, parse_iso
from tools.errors import DependencyError
from tools.governor import CallContext, CallGovernor
from tools.http import LoopClients, classify, json_body
from tools.recording import Recorder

__all__ = ["CarrierClient", "Tracking"]

STATUSES = ("label_created", "in_transit", "out_for_delivery", "delivered", "exception")


@dataclass(frozen=True, slots=True, kw_only=True)
class Tracking:
    """What the carrier says about one shipment."""

    tracking_number: str
    """The tracking number asked about."""
    carrier: str
    """Carrier name."""
    status: str
    """label_created, in_transit, out_for_delivery, delivered or exception."""
    eta: str | None
    """Expected delivery, if known."""
    last_event: str
    """The latest scan or event."""
    as_of: datetime
    """When the carrier said so."""


class CarrierClient:
    """`GET /v1/shipments/{tracking_number}` through the governor."""

    dependency = "carrier"

    def __init__(self, clients: LoopClients, governor: CallGovernor,
                 recorder: Recorder | None = None, clock: Clock | None = None) -> None:
        self._clients = clients
        self._governor = governor
        self._clock = clock or Clock()
        self._recorder = recorder or Recorder(self._clock)

    async def aclose(self) -> None:
        """Close this loop's HTTP connections."""
        await self._clients.aclose()

    async def track(self, tracking_number: str, ctx: CallContext) -> Tracking | None:
        """The shipment's live status, None if the carrier does not know it."""

        async def attempt(limit_s: float) -> Tracking | None:
            response = await self._clients.get().get(
                f"/v1/shipments/{quote(tracking_number, safe='')}", timeout=limit_s)
            if response.status_code == 404:
                return None
            if response.status_code != 200:
                raise classify(self.dependency, response)
            return _parse(json_body(self.dependency, response))

        return await self._recorder.call(
            ctx, self.dependency, "track", {"tracking_number": tracking_number},
            lambda: self._governor.call(self.dependency, attempt, ctx, action="track"))


def _parse(body: Any) -> Tracking:
    try:
        status = str(body["status"])
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        return Tracking(tracking_number=str(body["tracking_number"]),
                        carrier=str(body["carrier"]), status=status,
                        eta=str(body["eta"]) if body.get("eta") else None,
                        last_event=str(body.get("last_event") or ""),
                        as_of=parse_iso(str(body["as_of"])))
    except (KeyError, TypeError, ValueError) as exc:
        raise DependencyError(f"malformed answer: {exc}", dependency="carrier", retryable=False,
                              reason="malformed") from None
