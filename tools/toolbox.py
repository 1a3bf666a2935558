"""Everything workers and guards may call, built once from settings."""

from __future__ import annotations

from dataclasses import dataclass

from langchain_core.language_models import BaseChatModel

from graphs.settings import Settings
from tools.carrier import CarrierClient
from tools.clock import Clock
from tools.effects import EffectJournal
from tools.governor import CallGovernor, Governor
from tools.http import LoopClients
from tools.model import ModelClient, build_chat_model
from tools.payments import PaymentsClient
from tools.simulators import CarrierSimulator, PaymentsSimulator
from tools.store import Store

__all__ = ["Toolbox", "build_toolbox"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Toolbox:
    """The store, the dependency clients, the governor, and the simulators when in use."""

    settings: Settings
    """The settings everything was built from."""
    clock: Clock
    """The clock every component uses."""
    store: Store
    """The store database."""
    governor: CallGovernor
    """The one retry layer (`Governor`: breakers, budgets, bulkheads, deadlines)."""
    carrier: CarrierClient
    """Carrier tracking."""
    payments: PaymentsClient
    """Payments (refunds)."""
    effects: EffectJournal
    """The journal of side-effect attempts."""
    model: ModelClient | None
    """The planner's model, None with `INTERLOCK_MODEL=rules`."""
    carrier_sim: CarrierSimulator | None
    """The in-process carrier simulator, when no carrier URL is set."""
    payments_sim: PaymentsSimulator | None
    """The in-process payments simulator, when no payments URL is set."""

    async def aclose(self) -> None:
        """Close the running loop's HTTP connections (call before the loop ends)."""
        await self.carrier.aclose()
        await self.payments.aclose()


def build_toolbox(settings: Settings, *, clock: Clock | None = None,
                  chat_model: BaseChatModel | None = None,
                  governor: CallGovernor | None = None) -> Toolbox:
    """Build the toolbox. Cheap: nothing touches disk or network until first use."""
    clock = clock or Clock()
    governor = governor or Governor(settings, clock=clock)
    carrier_sim = None
    if settings.carrier_url:
        carrier_http = LoopClients(settings.carrier_url)
    else:
        carrier_sim = CarrierSimulator(settings.store_path, faults=settings.fault("carrier"),
                                       clock=clock)
        carrier_http = LoopClients("http://carrier.sim", handler=carrier_sim)
    payments_sim = None
    if settings.payments_url:
        payments_http = LoopClients(settings.payments_url)
    else:
        payments_sim = PaymentsSimulator(settings.payments_sim_path, settings.store_path,
                                         faults=settings.fault("payments"), clock=clock)
        payments_http = LoopClients("http://payments.sim", handler=payments_sim)
    chat_model = chat_model or build_chat_model(settings)
    return Toolbox(
        settings=settings, clock=clock, store=Store(settings.store_path, clock), governor=governor,
        carrier=CarrierClient(carrier_http, governor, clock),
        payments=PaymentsClient(payments_http, governor, clock),
        effects=EffectJournal(settings.effects_path, clock),
        model=ModelClient(chat_model, governor, clock) if chat_model is not None else None,
        carrier_sim=carrier_sim, payments_sim=payments_sim,
    )
