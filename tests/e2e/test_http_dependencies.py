"""The same client code against simulators served over real HTTP by `interlock simulate`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from graphs.runner import open_interlock
from graphs.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(settings: Settings) -> Iterator[dict[str, str]]:
    """`interlock simulate carrier` and `... payments` as separate processes on 127.0.0.1."""
    env = {**os.environ, "INTERLOCK_HOME": str(settings.home)}
    processes: list[subprocess.Popen[str]] = []
    urls: dict[str, str] = {}
    try:
        for dependency in ("carrier", "payments"):
            process = subprocess.Popen(
                [sys.executable, "-m", "graphs.cli", "simulate", dependency, "--port", "0"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
            processes.append(process)
            assert process.stdout is not None
            line = process.stdout.readline().strip()  # the server prints its URL when ready
            assert line.startswith("http://127.0.0.1:"), line
            urls[dependency] = line
        yield urls
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)


async def test_graph_over_real_http(settings: Settings, served: dict[str, str]) -> None:
    settings = settings.with_url("carrier", served["carrier"]).with_url("payments",
                                                                        served["payments"])
    async with open_interlock(settings) as app:
        assert app.toolbox.carrier_sim is None and app.toolbox.payments_sim is None
        tracked = await app.run("Where is my order 1042?")
        refunded = await app.run("Refund $20 on order 1012")
    assert tracked.status == "completed" and "in transit" in tracked.answer
    assert refunded.status == "completed", refunded.answer
    async with httpx.AsyncClient() as client:
        carrier = (await client.get(f"{served['carrier']}/_sim/stats")).json()
        payments = (await client.get(f"{served['payments']}/_sim/refunds")).json()
        faults = await client.put(f"{served['carrier']}/_sim/faults", json={"fail": 1.0})
    assert carrier["calls"] == 1 and carrier["statuses"] == {"200": 1}
    assert [(r["order_id"], r["amount_cents"]) for r in payments["refunds"]] == [(1012, 2000)]
    assert faults.status_code == 200
    async with open_interlock(settings) as app:
        down = await app.run("Where is my order 1042?")
    assert down.status == "completed" and down.degraded == ["carrier"]
