"""A team's dependency: the warehouse's returns API, declared once (client, simulator, policy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from graphs.core.clock import Clock
from tools.dependencies import Dependency, Wiring
from tools.governor import CallContext
from tools.http import classify, json_body
from tools.policy import DependencyPolicy
from tools.simulators.faults import FaultInjector, SimulatorStats


@dataclass(frozen=True, slots=True, kw_only=True)
class ReturnAuthorization:
    """What the warehouse knows of an order's return."""

    order_id: int
    rma: str | None
    status: str
    as_of: str


class WarehouseClient:
    """`GET /v1/returns/{order_id}`, through the governor, recorded at the seam."""

    def __init__(self, wiring: Wiring) -> None:
        self._wiring = wiring

    async def return_of(self, order_id: int, ctx: CallContext) -> ReturnAuthorization:
        async def attempt(limit_s: float) -> ReturnAuthorization:
            answer = await self._wiring.http.get().get(f"/v1/returns/{order_id}",
                                                      timeout=limit_s)
            if answer.status_code != 200:
                raise classify("warehouse", answer)
            return ReturnAuthorization(**json_body("warehouse", answer))

        w = self._wiring
        return await w.recorder.call(ctx, "warehouse", "return_of", {"order_id": order_id},
                                     lambda: w.governor.call("warehouse", attempt, ctx,
                                                             action="return_of"))


class WarehouseSimulator:
    """The returns API in-process: orders ending in 2 have an open return, others none."""

    def __init__(self, faults: Any, clock: Clock | None = None) -> None:
        self.faults = FaultInjector(faults, clock)
        self.stats = SimulatorStats()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.stats.calls += 1
        if (faulted := await self.faults.before()) is not None:
            self.stats.statuses[faulted.status_code] += 1
            return faulted
        order_id = int(request.url.path.rsplit("/", 1)[-1])
        open_ = order_id % 10 == 2
        self.stats.statuses[200] += 1
        return httpx.Response(200, json={"order_id": order_id,
                                         "rma": f"RMA-{order_id}" if open_ else None,
                                         "status": "open" if open_ else "none",
                                         "as_of": "2026-12-01T00:00:00Z"})


WAREHOUSE = Dependency(
    name="warehouse", description="The warehouse's returns API (GET /v1/returns/{order_id}).",
    policy=DependencyPolicy(timeout=1.0, attempts=2, fail_max=2, reset_timeout=60.0,
                            health_window=4),
    client=WarehouseClient,
    simulator=lambda w: WarehouseSimulator(w.faults, w.clock),
    result_types=lambda: (ReturnAuthorization,))
DEPENDENCIES = [WAREHOUSE]  # what INTERLOCK_EXTENSIONS reads
