"""A toolbox that calls nothing: every store read and dependency answer comes from a recording.

Used by `interlock replay`. Each replayed call is looked up by plan step, dependency, action and
arguments; a call the recorded run never made raises `ReplayMismatch`, which surfaces as a
failed step and so as a difference in the determinism report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from langchain_core.messages import BaseMessage
from pydantic import BaseModel

from graphs.settings import Settings
from graphs.state import Actor
from tools.carrier import CarrierClient, Tracking
from tools.clock import Clock
from tools.effects import EffectJournal, Exposure, Proposal
from tools.governor import CallContext, Governor
from tools.http import LoopClients
from tools.model import ModelClient
from tools.payments import PaymentsClient, Refund
from tools.recording import RecordedResults, decode, raise_recorded_error, recorded
from tools.resilience_store import MemoryStore
from tools.store import Item, Order, Policy, Shipment, Store
from tools.toolbox import Toolbox

__all__ = ["replay_toolbox"]

M = TypeVar("M", bound=BaseModel)
_TYPES: dict[str, Any] = {c.__name__: c for c in (Order, Item, Shipment, Policy, Tracking,
                                                  Refund, Exposure)}


class _Served:
    """Serves recorded results and records them again, so the replay's lineage matches."""

    def __init__(self, results: RecordedResults, clock: Clock) -> None:
        self.results = results
        self.clock = clock

    async def serve(self, ctx: CallContext | None, dependency: str, action: str,
                    args: dict[str, Any], types: dict[str, Any] | None = None) -> Any:
        value = self.results.take(ctx.step_id if ctx else None, dependency, action, args)

        async def answer() -> Any:
            raise_recorded_error(dependency, value)
            return decode(value, {**_TYPES, **(types or {})})

        return await recorded(ctx, self.clock, dependency, action, args, answer())


class _ReplayStore(Store):
    def __init__(self, served: _Served) -> None:
        super().__init__(Path("/nonexistent/replay-has-no-store.db"), served.clock)
        self._served = served

    async def order(self, order_id: int, *, actor: Actor,
                    ctx: CallContext | None = None) -> Order | None:
        result: Order | None = await self._served.serve(
            ctx, "store", "order", {"order_id": order_id, "actor": dict(actor)})
        return result

    async def shipment(self, order_id: int, *, actor: Actor,
                       ctx: CallContext | None = None) -> Shipment | None:
        result: Shipment | None = await self._served.serve(
            ctx, "store", "shipment", {"order_id": order_id, "actor": dict(actor)})
        return result

    async def policies(self, ctx: CallContext | None = None) -> list[Policy]:
        result: list[Policy] = await self._served.serve(ctx, "store", "policies", {})
        return result


class _ReplayJournal(EffectJournal):
    def __init__(self, served: _Served) -> None:
        super().__init__(Path("/nonexistent/replay-has-no-journal.db"), served.clock)
        self._served = served

    async def begin(self, key: str, *, dependency: str, request: dict[str, Any],
                    ctx: CallContext | None = None) -> int:
        result: int = await self._served.serve(ctx, "effects", "begin", {"key": key})
        return result

    async def attempted(self, key: str, ctx: CallContext | None = None
                        ) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self._served.serve(ctx, "effects", "attempted",
                                                                 {"key": key})
        return result

    async def effect(self, effect_id: str, ctx: CallContext | None = None
                     ) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self._served.serve(
            ctx, "effects", "effect", {"effect_id": effect_id})
        return result

    async def entry(self, key: str, ctx: CallContext | None = None) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self._served.serve(ctx, "effects", "entry",
                                                                 {"key": key})
        return result

    async def propose(self, proposal: Proposal, *, window_s: float, duplicate_window_s: float,
                      decide: Any, ctx: CallContext | None = None) -> tuple[Exposure, str]:
        exposure, decision = await self._served.serve(ctx, "effects", "propose",
                                                      {"key": proposal.key})
        return exposure, str(decision)

    async def finish(self, key: str, outcome: str, result: dict[str, Any] | None = None
                     ) -> None:
        return None


class _ReplayCarrier(CarrierClient):
    def __init__(self, served: _Served, governor: Governor) -> None:
        super().__init__(LoopClients("http://replay.invalid"), governor, served.clock)
        self._served = served

    async def track(self, tracking_number: str, ctx: CallContext) -> Tracking | None:
        result: Tracking | None = await self._served.serve(
            ctx, "carrier", "track", {"tracking_number": tracking_number})
        return result


class _ReplayPayments(PaymentsClient):
    def __init__(self, served: _Served, governor: Governor) -> None:
        super().__init__(LoopClients("http://replay.invalid"), governor, served.clock)
        self._served = served

    async def refund(self, *, order_id: int, amount_cents: int, currency: str, reason: str,
                     idempotency_key: str, ctx: CallContext) -> Refund:
        result: Refund = await self._served.serve(ctx, "payments", "refund", {
            "order_id": order_id, "amount_cents": amount_cents, "currency": currency,
            "reason": reason, "idempotency_key": idempotency_key})
        return result

    async def refunds(self, order_id: int, ctx: CallContext) -> list[Refund]:
        result: list[Refund] = await self._served.serve(ctx, "payments", "list_refunds",
                                                        {"order_id": order_id})
        return result


class _ReplayModel(ModelClient):
    def __init__(self, served: _Served, name: str) -> None:
        self._served = served
        self._name = name

    @property
    def name(self) -> str:
        """The recorded model's name."""
        return self._name

    async def structured(self, schema: type[M], messages: list[BaseMessage],
                         ctx: CallContext) -> M:
        text = str(messages[-1].content) if messages else ""
        result: M = await self._served.serve(ctx, "model", "plan", {"request": text},
                                             {schema.__name__: schema})
        return result


def replay_toolbox(settings: Settings, results: RecordedResults, clock: Clock) -> Toolbox:
    """A toolbox answering from `results`; it has no simulators and reaches no network."""
    served = _Served(results, clock)
    governor = Governor(settings, clock=clock, store=MemoryStore())
    return Toolbox(
        settings=settings, clock=clock, store=_ReplayStore(served), governor=governor,
        carrier=_ReplayCarrier(served, governor), payments=_ReplayPayments(served, governor),
        effects=_ReplayJournal(served),
        model=_ReplayModel(served, settings.model) if settings.model != "rules"
        else None,
        carrier_sim=None, payments_sim=None)
