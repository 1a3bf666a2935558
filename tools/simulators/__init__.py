"""In-process simulators of the carrier and payments APIs (the contracts in ENGINEERING.md)."""

from tools.simulators.carrier import CarrierSimulator
from tools.simulators.faults import FaultInjector, SimulatorStats
from tools.simulators.payments import PaymentsSimulator

__all__ = ["CarrierSimulator", "FaultInjector", "PaymentsSimulator", "SimulatorStats"]
