"""Payments client (httpx): refunds with an idempotency key, and the refunds of an order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphs.core.clock import Clock
from tools.errors import DependencyError
from tools.governor import CallContext, CallGovernor
from tools.http import LoopClients, classify, json_body
from tools.recording import Recorder

__all__ = ["PaymentsClient", "Refund"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Refund:
    """A refund as the payments service reports it."""

    refund_id: str
    """The service's id."""
    order_id: int
    """The refunded order."""
    amount_cents: int
    """Amount refunded."""
    currency: str
    """ISO currency code."""
    status: str
    """The service's status (succeeded)."""
    created_at: str
    """When it was made."""
    replayed: bool = False
    """True when the service answered a repeated idempotency key with the earlier refund."""


class PaymentsClient:
    """`POST /v1/refunds` and `GET /v1/refunds?order_id=` through the governor."""

    dependency = "payments"

    def __init__(self, clients: LoopClients, governor: CallGovernor,
                 recorder: Recorder | None = None, clock: Clock | None = None) -> None:
        self._clients = clients
        self._governor = governor
        self._clock = clock or Clock()
        self._recorder = recorder or Recorder(self._clock)

    async def aclose(self) -> None:
        """Close this loop's HTTP connections."""
        await self._clients.aclose()

    async def refund(self, *, order_id: int, amount_cents: int, currency: str, reason: str,
                     idempotency_key: str, ctx: CallContext) -> Refund:
        """Create (or, for a repeated key, fetch) a refund. 5xx and timeouts are retried."""
        body = {"order_id": order_id, "amount_cents": amount_cents, "currency": currency,
                "reason": reason}

        async def attempt(limit_s: float) -> Refund:
            response = await self._clients.get().post(
                "/v1/refunds", json=body, headers={"Idempotency-Key": idempotency_key},
                timeout=limit_s)
            if response.status_code not in (200, 201):
                raise classify(self.dependency, response)
            return _parse(json_body(self.dependency, response),
                          replayed=response.status_code == 200)

        return await self._recorder.call(
            ctx, self.dependency, "refund", {**body, "idempotency_key": idempotency_key},
            lambda: self._governor.call(self.dependency, attempt, ctx, action="refund"))

    async def refunds(self, order_id: int, ctx: CallContext) -> list[Refund]:
        """Every refund of an order, as the payments service knows them."""

        async def attempt(limit_s: float) -> list[Refund]:
            response = await self._clients.get().get(
                "/v1/refunds", params={"order_id": order_id}, timeout=limit_s)
            if response.status_code != 200:
                raise classify(self.dependency, response)
            body = json_body(self.dependency, response)
            items = body.get("refunds") if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise DependencyError("malformed answer: no refunds list",
                                      dependency=self.dependency, retryable=False,
                                      reason="malformed")
            return [_parse(item) for item in items]

        return await self._recorder.call(
            ctx, self.dependency, "list_refunds", {"order_id": order_id},
            lambda: self._governor.call(self.dependency, attempt, ctx, action="list_refunds"))


def _parse(body: Any, *, replayed: bool = False) -> Refund:
    try:
        return Refund(refund_id=str(body["refund_id"]), order_id=int(body["order_id"]),
                      amount_cents=int(body["amount_cents"]), currency=str(body["currency"]),
                      status=str(body["status"]), created_at=str(body["created_at"]),
                      replayed=replayed)
    except (KeyError, TypeError, ValueError) as exc:
        raise DependencyError(f"malformed answer: {exc}", dependency="payments",
                              retryable=False, reason="malformed") from None
