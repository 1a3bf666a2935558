"""A dependency is declared once: its name, policy, client, simulator, and how replay serves it.

Everything else derives from the declaration: the settings that tune it
(`INTERLOCK_DEP_<NAME>`, `INTERLOCK_FAULTS_<NAME>`, `INTERLOCK_<NAME>_URL`), the toolbox's
client, the in-process simulator used when no URL is set, `interlock simulate NAME`, the chaos
harness's fault injection, the governor's breaker, budget and bulkhead, and replay (which serves
a recorded result as the declared result types). A team adds a dependency with one module that
defines a `Dependency` and passes it to `build_graph(dependencies=[...])` or the settings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tools.policy import DependencyPolicy, FaultSpec

if TYPE_CHECKING:
    import httpx

    from graphs.core.clock import Clock
    from tools.governor import CallGovernor
    from tools.http import LoopClients
    from tools.recording import Recorder
    from tools.simulators.faults import FaultInjector, SimulatorStats

__all__ = ["CARRIER", "DEFAULT_DEPENDENCIES", "MODEL", "PAYMENTS", "Dependency", "Simulator",
           "SimulatorWiring", "Wiring", "by_name"]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def _no_types() -> tuple[type, ...]:
    return ()


class Simulator(Protocol):
    """An in-process stand-in for a dependency: an httpx handler with faults and counts."""

    faults: FaultInjector
    """What it injects (set at run time by tests and the chaos harness)."""
    stats: SimulatorStats
    """What it received and answered."""

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        """Answer one request."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatorWiring:
    """What a simulator is built from."""

    home: Path
    """The data directory (INTERLOCK_HOME)."""
    store_path: Path
    """The store database, for simulators that answer from the seeded data."""
    faults: FaultSpec
    """The faults to inject."""
    clock: Clock | None = None
    """The clock (a fake one in tests)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Wiring:
    """What a dependency's client is built from (the toolbox builds one per dependency)."""

    name: str
    """The dependency's name: its breaker, budget, bulkhead and events go by it."""
    http: LoopClients
    """HTTP clients at its base URL, or at its simulator."""
    governor: CallGovernor
    """The one retry layer every call goes through."""
    recorder: Recorder
    """The seam every call's result is recorded at (and served from, in a replay)."""
    clock: Clock
    """The clock."""
    settings: Any
    """The settings (for clients that need more, such as the model's)."""
    simulator: Simulator | None = None
    """The in-process simulator behind `http`, when no URL is set."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Dependency:
    """One external dependency, declared once."""

    name: str
    """Lower-case identifier (`warehouse`); the settings' names derive from it."""
    description: str
    """One line, for people (`interlock simulate --help`, the README)."""
    policy: DependencyPolicy
    """Its default call policy (timeouts, attempts, breaker, bulkhead, retry budget)."""
    client: Callable[[Wiring], Any] | None = None
    """Builds its client (every call through `wiring.governor`, recorded at
    `wiring.recorder`); None for one reached through a governed adapter of the team's own
    (`tools.adapters`: an httpx transport, a tool, a chat model)."""
    simulator: Callable[[SimulatorWiring], Simulator] | None = None
    """Builds its in-process simulator (None: it has none, and needs a URL)."""
    result_types: Callable[[], tuple[type, ...]] = _no_types
    """The types its client's results are made of, so a replay can serve them from the
    record (dataclasses and pydantic models, by name); a function, so that declaring a
    dependency imports nothing heavy."""
    simulated_by_default: bool = True
    """Whether the simulator answers when no URL is set (the model's is used by chaos only)."""
    url_variable: str = field(default="")
    """The variable naming its base URL (default `INTERLOCK_<NAME>_URL`)."""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"a dependency's name is a lower-case identifier, not {self.name!r}")
        if not self.url_variable:
            object.__setattr__(self, "url_variable", f"INTERLOCK_{self.name.upper()}_URL")

    def simulate(self, settings: Any, clock: Clock | None = None) -> Simulator | None:
        """Its simulator, with the files and faults `settings` give it (None: it has none)."""
        if self.simulator is None:
            return None
        return self.simulator(SimulatorWiring(home=settings.home, store_path=settings.store_path,
                                              faults=settings.fault(self.name), clock=clock))

    @property
    def policy_variable(self) -> str:
        """`INTERLOCK_DEP_<NAME>`: its call policy."""
        return f"INTERLOCK_DEP_{self.name.upper()}"

    @property
    def faults_variable(self) -> str:
        """`INTERLOCK_FAULTS_<NAME>`: the faults its simulator injects."""
        return f"INTERLOCK_FAULTS_{self.name.upper()}"


def by_name(dependencies: Iterable[Dependency]) -> Mapping[str, Dependency]:
    """Registrations by name; two with one name are an error."""
    found: dict[str, Dependency] = {}
    for dependency in dependencies:
        if dependency.name in found and found[dependency.name] is not dependency:
            raise ValueError(f"two dependencies are named {dependency.name!r}")
        found[dependency.name] = dependency
    return found


def _carrier(wiring: Wiring) -> Any:
    from tools.carrier import CarrierClient

    return CarrierClient(wiring.http, wiring.governor, wiring.recorder, wiring.clock)


def _carrier_simulator(wiring: SimulatorWiring) -> Simulator:
    from tools.simulators.carrier import CarrierSimulator

    return CarrierSimulator(wiring.store_path, faults=wiring.faults, clock=wiring.clock)


def _payments(wiring: Wiring) -> Any:
    from tools.payments import PaymentsClient

    return PaymentsClient(wiring.http, wiring.governor, wiring.recorder, wiring.clock)


def _payments_simulator(wiring: SimulatorWiring) -> Simulator:
    from tools.simulators.payments import PaymentsSimulator

    return PaymentsSimulator(wiring.home / "payments-sim.db", wiring.store_path,
                             faults=wiring.faults, clock=wiring.clock)


def _model(wiring: Wiring) -> Any:
    if getattr(wiring.settings, "model", "rules") == "rules":
        return None  # the rules planner: no model, and no model SDK loaded
    from tools.model import ModelClient, build_chat_model

    chat = build_chat_model(wiring.settings, handler=wiring.simulator)
    return ModelClient(chat, wiring.governor, wiring.recorder, wiring.clock) if chat else None


def _model_simulator(wiring: SimulatorWiring) -> Simulator:
    from tools.simulators.model import ModelSimulator

    # It plans nothing: a harness that needs plans (chaos) builds one with its own planner.
    return ModelSimulator(lambda text: {"intents": ["unknown"], "steps": []},
                          faults=wiring.faults, clock=wiring.clock)


def _carrier_types() -> tuple[type, ...]:
    from tools.carrier import Tracking

    return (Tracking,)


def _payments_types() -> tuple[type, ...]:
    from tools.payments import Refund

    return (Refund,)


CARRIER = Dependency(
    name="carrier", description="Carrier tracking API (GET /v1/shipments/{tracking_number}).",
    policy=DependencyPolicy(timeout=2.0, attempts=4, max_concurrency=8),
    client=_carrier, simulator=_carrier_simulator, result_types=_carrier_types)
"""The carrier's tracking API."""

PAYMENTS = Dependency(
    name="payments", description="Payments API (POST /v1/refunds with Idempotency-Key).",
    # Idempotent under its key, a refund is retried like a read, and more: one that fails
    # every attempt is settled later, at the cost of doing it again (the read before it
    # included). Ten attempts leave one call in 170,000 unserved at 30% failures and one in a
    # thousand at 50%; the budget and the breaker bound what they may add together.
    policy=DependencyPolicy(timeout=5.0, attempts=10, fail_max=10, max_concurrency=8),
    client=_payments, simulator=_payments_simulator, result_types=_payments_types)
"""The payments service (refunds)."""

MODEL = Dependency(
    name="model", description="The planner's chat model (OpenAI-compatible).",
    # Four attempts, so a 30%-flaky model still plans 99% of requests (the rules planner
    # answers the rest; the deadline cuts a slow model's attempts short); three failures in a
    # row open the breaker once it is down.
    policy=DependencyPolicy(timeout=20.0, attempts=4, fail_max=3, reset_timeout=60.0,
                            max_concurrency=4),
    client=_model, simulator=_model_simulator, simulated_by_default=False,
    url_variable="OPENAI_BASE_URL")
"""The chat model behind the LLM planner (`INTERLOCK_MODEL=openai:<model>`)."""

DEFAULT_DEPENDENCIES: tuple[Dependency, ...] = (CARRIER, PAYMENTS, MODEL)
"""The reference domain's dependencies."""
