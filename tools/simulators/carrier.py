"""The carrier tracking API, simulated: `GET /v1/shipments/{tracking_number}`."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

import httpx

from graphs.core.clock import Clock, iso
from tools.policy import FaultSpec
from tools.simulators.faults import FaultInjector, SimulatorStats
from tools.store import ensure_store

__all__ = ["CarrierSimulator"]

_PATH = re.compile(r"^/v1/shipments/([A-Za-z0-9]{4,40})$")


class CarrierSimulator:
    """Answers tracking requests from the store's seeded shipments; faults on demand.

    Call it with an `httpx.Request` (it is an `httpx.MockTransport` handler) or serve it
    over HTTP with `tools.simulators.asgi.asgi_app`.
    """

    name = "carrier"

    def __init__(self, store_path: Path, *, faults: FaultSpec | None = None,
                 clock: Clock | None = None) -> None:
        self._store_path = store_path
        self._clock = clock or Clock()
        self.faults = FaultInjector(faults, self._clock)
        self.stats = SimulatorStats()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        """Handle one request."""
        self.stats.calls += 1
        self.stats.in_flight += 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        try:
            response = await self._handle(request)
        finally:
            self.stats.in_flight -= 1
        self.stats.statuses[response.status_code] += 1
        return response

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        if (faulted := await self.faults.before()) is not None:
            return faulted
        match = _PATH.match(request.url.path)
        if request.method != "GET" or match is None:
            return httpx.Response(404, json={"error": "not_found"})
        row = await asyncio.to_thread(self._lookup, match.group(1))
        if row is None:
            return httpx.Response(404, json={"error": "not_found"})
        tracking, carrier, status, eta, last_event = row
        return httpx.Response(200, json={
            "tracking_number": tracking, "carrier": carrier, "status": status, "eta": eta,
            "last_event": last_event, "as_of": iso(self._clock.now()),
        })

    def _lookup(self, tracking_number: str) -> tuple[str, str, str, str | None, str] | None:
        ensure_store(self._store_path, self._clock)
        conn = sqlite3.connect(f"file:{self._store_path.resolve()}?mode=ro", uri=True)
        try:
            row = conn.execute(
                "SELECT tracking_number, carrier, sim_status, sim_eta, sim_last_event "
                "FROM shipments WHERE tracking_number = ?", (tracking_number,)).fetchone()
        finally:
            conn.close()
        return None if row is None else (row[0], row[1], row[2], row[3], row[4])
