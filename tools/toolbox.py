"""Everything workers and guards may call, built once from settings and the registrations."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from graphs.core.clock import Clock
from graphs.core.errors import ConfigError
from tools.config import ToolSettings
from tools.dependencies import Simulator, Wiring
from tools.effects import EffectJournal
from tools.governor import CallGovernor, Governor
from tools.http import Handler, LoopClients
from tools.recording import Recorder
from tools.store import Store

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from tools.carrier import CarrierClient
    from tools.model import ModelClient
    from tools.payments import PaymentsClient
    from tools.simulators.carrier import CarrierSimulator
    from tools.simulators.payments import PaymentsSimulator

__all__ = ["Toolbox", "build_toolbox"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Toolbox:
    """The store, a client per registered dependency, the governor, the journal, the recorder."""

    settings: ToolSettings
    """The settings everything was built from."""
    clock: Clock
    """The clock every component uses."""
    store: Store
    """The store database."""
    governor: CallGovernor
    """The one retry layer (`Governor`: breakers, budgets, bulkheads, deadlines)."""
    effects: EffectJournal
    """The journal of side effects (proposed and attempted)."""
    recorder: Recorder
    """The seam every recorded call passes (a replay's serves them from the record)."""
    clients: Mapping[str, Any]
    """Each dependency's client, by name (None for the model with `INTERLOCK_MODEL=rules`)."""
    simulators: Mapping[str, Simulator]
    """The in-process simulators answering for dependencies with no URL."""
    http: Mapping[str, LoopClients]
    """Each HTTP dependency's clients (closed by `aclose`)."""

    def client(self, name: str) -> Any:
        """The client of a registered dependency."""
        try:
            return self.clients[name]
        except KeyError:
            raise ConfigError(f"no dependency {name!r} is registered",
                              variable=f"INTERLOCK_DEP_{name.upper()}") from None

    @property
    def carrier(self) -> CarrierClient:
        """Carrier tracking."""
        return cast("CarrierClient", self.client("carrier"))

    @property
    def payments(self) -> PaymentsClient:
        """Payments (refunds)."""
        return cast("PaymentsClient", self.client("payments"))

    @property
    def model(self) -> ModelClient | None:
        """The planner's model, None with `INTERLOCK_MODEL=rules`."""
        return cast("ModelClient | None", self.clients.get("model"))

    @property
    def carrier_sim(self) -> CarrierSimulator | None:
        """The in-process carrier simulator, when no carrier URL is set."""
        return cast("CarrierSimulator | None", self.simulators.get("carrier"))

    @property
    def payments_sim(self) -> PaymentsSimulator | None:
        """The in-process payments simulator, when no payments URL is set."""
        return cast("PaymentsSimulator | None", self.simulators.get("payments"))

    async def aclose(self) -> None:
        """Close the running loop's HTTP connections and the journal's database connections."""
        for clients in self.http.values():
            await clients.aclose()
        await asyncio.to_thread(self.effects.close)


def build_toolbox(settings: ToolSettings, *, clock: Clock | None = None,
                  chat_model: BaseChatModel | None = None,
                  governor: CallGovernor | None = None, recorder: Recorder | None = None,
                  simulators: Mapping[str, Simulator] | None = None,
                  transport: Handler | None = None) -> Toolbox:
    """Build the toolbox: one client per registered dependency. Nothing is opened yet.

    A dependency with no URL is answered by its simulator (`simulators` replaces or adds
    one); `transport` answers every HTTP call instead (a replay refuses and counts them);
    `chat_model` stands in for the configured model (tests script one).
    """
    clock = clock or Clock()
    governor = governor or Governor(settings, clock=clock)
    recorder = recorder or Recorder(clock)
    given = dict(simulators or {})
    sims: dict[str, Simulator] = {}
    clients: dict[str, Any] = {}
    http: dict[str, LoopClients] = {}
    for dep in settings.dependencies:
        recorder.learn(dep.result_types())
        url = settings.url(dep.name)
        sim = given.get(dep.name)
        if sim is None and url is None and dep.simulator is not None and (
                dep.simulated_by_default):
            sim = dep.simulate(settings, clock)
        if sim is not None:
            sims[dep.name] = sim
        handler = transport or (sim if url is None else None)
        loop = http[dep.name] = LoopClients(url or f"http://{dep.name}.sim", handler=handler)
        if dep.client is not None:
            clients[dep.name] = dep.client(Wiring(name=dep.name, http=loop, governor=governor,
                                                  recorder=recorder, clock=clock,
                                                  settings=settings, simulator=sim))
    if chat_model is not None:
        from tools.model import ModelClient

        clients["model"] = ModelClient(chat_model, governor, recorder, clock)
    return Toolbox(settings=settings, clock=clock,
                   store=Store(settings.store_path, clock, recorder), governor=governor,
                   effects=EffectJournal(settings.effects_path, clock, recorder,
                                         database_url=settings.database_url),
                   recorder=recorder, clients=clients, simulators=sims, http=http)
