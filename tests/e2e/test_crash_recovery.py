"""SIGKILL at many points of a refund run, then `interlock resume`: each refund exactly once.

The payments service is the simulator served over real HTTP on 127.0.0.1 by this test, which
also uses it to kill the client at the moments that matter most: when a payment request
arrives, after its refund is made but before the answer leaves, and after the answer left.
The other kill points come from `INTERLOCK_CRASH_AFTER`, which makes the process kill itself
right after its N-th checkpoint or writes record.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tools.effects import EffectJournal
from tools.simulators.payments import PaymentsSimulator
from tools.simulators.serve import Receive, Scope, Send, asgi_app
from tools.store import ensure_store

ROOT = Path(__file__).resolve().parents[2]
MESSAGE = "Refund $1 on order 1012"
KILL_POINTS = ([f"checkpoints={n}" for n in range(1, 17)]
               + [f"writes={n}" for n in range(1, 13, 2)]
               + ["server:received", "server:effect", "server:answered"])


class PaymentsServer:
    """The payments simulator on a real port, able to SIGKILL its client at a chosen moment."""

    def __init__(self, home: Path) -> None:
        ensure_store(home / "store.db")
        self.sim = PaymentsSimulator(home / "payments-server.db", home / "store.db")
        self.kill: tuple[str, int] | None = None  # (moment, pid)
        inner = asgi_app(self.sim)

        def strike(moment: str) -> None:
            if self.kill is not None and self.kill[0] == moment:
                os.kill(self.kill[1], signal.SIGKILL)
                self.kill = None

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            paying = scope.get("path") == "/v1/refunds" and scope.get("method") == "POST"
            if not paying:
                await inner(scope, receive, send)
                return
            strike("received")

            async def watched(message: Any) -> None:
                if message["type"] == "http.response.start":
                    strike("effect")  # the refund is made; its answer has not left
                await send(message)
                if message["type"] == "http.response.body":
                    strike("answered")

            await inner(scope, receive, watched)

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0,
                                                    lifespan="off", log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                break
            time.sleep(0.01)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, Any]]:
    home = tmp_path_factory.mktemp("crash") / "home"
    server = PaymentsServer(home)
    with server as url:
        yield home, url, server


def cli(home: Path, url: str, *args: str, crash: str | None = None
        ) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
    # Every kill point refunds $1 on order 1012 again in one home: the cumulative and
    # duplicate checks, which would put the repeats before a human, are off here.
    env.update({"INTERLOCK_HOME": str(home), "INTERLOCK_PAYMENTS_URL": url,
                "INTERLOCK_DUPLICATE_WINDOW_S": "0",
                "INTERLOCK_AUTO_APPROVE_ORDER_CENTS": "1000000",
                "INTERLOCK_AUTO_APPROVE_CUSTOMER_CENTS": "1000000"})
    if crash:
        env["INTERLOCK_CRASH_AFTER"] = crash
    return subprocess.Popen([sys.executable, "-m", "graphs.cli", *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=120)
    assert "Traceback" not in err, err
    return process.returncode, out, err


def guards_of(history: list[dict[str, Any]]) -> Counter[tuple[str, str | None]]:
    return Counter((v["guard"], v.get("step_id")) for s in history for v in s["verdicts"])


@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_then_resume_pays_exactly_once(served: tuple[Path, str, Any], point: str) -> None:
    home, url, server = served
    thread = f"crash-{point.replace('=', '-').replace(':', '-')}"
    refunds_before = len(server.sim.all_refunds())
    crash = None if point.startswith("server:") else point
    run = cli(home, url, "run", MESSAGE, "--thread", thread, "--json", crash=crash)
    if point.startswith("server:"):
        server.kill = (point.split(":")[1], run.pid)
    code, out, _ = finish(run)
    server.kill = None
    # Every point lands inside the run: one past its last record would finish it unharmed.
    assert code == -signal.SIGKILL, (code, out)
    resumed = None
    for _ in range(3):  # a resume is not crashed; one is enough unless the run never began
        code, out, err = finish(cli(home, url, "resume", thread, "--json"))
        if code == 0:
            resumed = json.loads(out)
            break
        assert code == 2 and "not found" in err  # killed before its first checkpoint
        code, _, _ = finish(cli(home, url, "run", MESSAGE, "--thread", thread, "--json"))
    assert resumed is not None
    assert resumed["status"] == "completed", resumed
    assert "I refunded $1.00 on order 1012" in resumed["answer"]
    [key] = {e["key"] for e in EffectJournal(home / "effects.db").entries()
             if e["thread_id"] == thread}
    made = [r for r in server.sim.all_refunds() if r["idempotency_key"] == key]
    assert len(made) == 1, made
    assert len(server.sim.all_refunds()) == refunds_before + 1  # no refund under another key
    history = json.loads(finish(cli(home, url, "history", thread, "--json"))[1])
    guards = guards_of(history)
    assert guards[("intake", None)] == 1 and guards[("output", None)] == 1
    assert guards[("approval", "t1.s3")] == 1
    assert all(n == 1 for (guard, step), n in guards.items() if guard == "facts")
    if point == "server:effect":
        events = [e for s in history for e in s["events"]]
        asked = [e for e in events if e["kind"] == "reconcile"]
        assert asked and asked[0]["detail"]["earlier_attempts"] >= 1
        assert asked[0]["detail"]["known_cents"] >= 100
