"""The AutoGen claims team and the CrewAI crew in their own environments, offline, end to end.

`make foreign` builds `.autogen-venv` and `.crewai-venv`; `graphs.foreign.foreign_stack` serves
each graph there (network beyond loopback refused), a scripted model behind the governed
gateway. What is checked here is what a person watching `interlock demo --foreign` sees: a claim
the team doubts goes to a human, a draft promising what no fact backs is refused, a throttled
crew costs the gateway's attempts and no more, a team that is down degrades its own step (and
its claim goes to a human), and neither environment reaches the network.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from graphs.core.actors import STAFF, Actor
from graphs.foreign import ROOT, ForeignStack, ScriptedModel, foreign_stack, missing_environments
from graphs.runner import Interlock, open_interlock
from graphs.settings import Settings

pytestmark = pytest.mark.skipif(bool(missing_environments()),
                                reason="the foreign environments are not built (make foreign)")
CUSTOMER_6 = Actor(kind="customer", customer_id=6)


@pytest.mark.parametrize("env", ["autogen", "crewai"])
def test_each_environments_own_tests_pass(env: str) -> None:
    venv = {"autogen": ".autogen-venv", "crewai": ".crewai-venv"}[env]
    done = subprocess.run([str(ROOT / venv / "bin" / "python"), "-m", "pytest", "-q",
                           "-p", "no:cacheprovider", f"foreign/{env}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


PROBE = """
import asyncio, socket
from typing_extensions import TypedDict
from langgraph.graph import END, START, StateGraph

class S(TypedDict, total=False):
    tried: list

async def probe(state):
    tried = []
    async def attempt(name, make):
        try:
            await make()
            tried.append(f"{name}: reached")
        except OSError as exc:
            denied = "network denied" in str(exc)
            tried.append(f"{name}: {'denied' if denied else type(exc).__name__}")
    far = ("10.255.255.1", 80)
    await attempt("asyncio", lambda: asyncio.wait_for(asyncio.open_connection(*far), 3))
    await attempt("lookup", lambda: asyncio.get_running_loop().getaddrinfo("example.com", 443))
    def sync_ex():
        s = socket.socket()
        s.settimeout(3)
        code = s.connect_ex(far)
        s.close()
        if code:
            raise ConnectionRefusedError("network denied" if code == 111 else f"code {code}")
    await attempt("connect_ex", lambda: asyncio.to_thread(sync_ex))
    def udp():
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.sendto(b"x", ("10.255.255.1", 53))
        u.close()
    await attempt("sendto", lambda: asyncio.to_thread(udp))
    def udp_msg():
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.sendmsg([b"x"], [], 0, ("10.255.255.1", 53))
        finally:
            u.close()
    await attempt("sendmsg", lambda: asyncio.to_thread(udp_msg))
    def by_bytes():
        b = socket.socket()
        b.settimeout(3)
        try:
            b.connect((b"10.255.255.1", 80))
        finally:
            b.close()
    await attempt("bytes_host", lambda: asyncio.to_thread(by_bytes))
    await attempt("gethostbyname", lambda: asyncio.to_thread(socket.gethostbyname,
                                                             "example.com"))
    await attempt("mapped_v6", lambda: asyncio.wait_for(
        asyncio.open_connection("::ffff:10.255.255.1", 80), 3))
    return {"tried": tried}

b = StateGraph(S)
b.add_node("probe", probe)
b.add_edge(START, "probe")
b.add_edge("probe", END)
graph = b.compile()
"""


@pytest.mark.parametrize("venv", [".autogen-venv", ".crewai-venv"])
def test_deny_network_refuses_and_counts_every_way_out(venv: str, tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text(PROBE)
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(ROOT / venv / "bin" / "python"), str(ROOT / "foreign" / "serve.py"),
             f"{tmp_path / 'probe.py'}:graph", "--graph-id", "probe", "--deny-network"],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
            env={"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path),
                 "PYTHONUNBUFFERED": "1"})
    try:
        url = ""
        for _ in range(300):
            if "serving probe on " in (text := log.read_text()):
                url = text.split("serving probe on ", 1)[1].split()[0]
                try:
                    if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
            time.sleep(0.1)
        ran = httpx.post(f"{url}/runs/wait", json={"assistant_id": "probe", "input": {}},
                         timeout=30).json()
        denied = httpx.get(f"{url}/info", timeout=5).json()["denied_connections"]
    finally:
        process.kill()
        process.wait(timeout=10)
    assert ran["tried"] == [f"{way}: denied" for way in (
        "asyncio", "lookup", "connect_ex", "sendto", "sendmsg", "bytes_host", "gethostbyname",
        "mapped_v6")], ran
    assert sum(d.startswith("lookup example.com") for d in denied) == 2, denied
    assert sum(d.startswith(("connect 10.255.255.1", "sendto 10.255.255.1",
                             "connect b'10.255.255.1'", "connect ::ffff:10.255.255.1"))
               for d in denied) == 6, denied


async def _desk(settings: Settings) -> AsyncIterator[tuple[ForeignStack, Interlock]]:
    async with foreign_stack(settings, model=ScriptedModel()) as stack:
        async with open_interlock(stack.settings(settings)) as app:
            yield stack, app


async def test_the_foreign_workers_end_to_end(settings: Settings) -> None:
    settings = replace(settings, model="rules")
    async for stack, app in _desk(settings):
        # A claim the team doubts: a $5 refund (under every limit) waits for a human.
        stack.model.verdict = "needs_evidence"
        doubted = await app.run("My order 1034 arrived damaged: the headphones are cracked. "
                                "Please refund $5.", actor=CUSTOMER_6)
        assert doubted.status == "awaiting_approval", doubted.answer
        reasons = (doubted.pending_approval or {})["reasons"]
        assert any(r.startswith("caution: claim_needs_evidence") and "no photo" in r
                   for r in reasons), reasons
        assert stack.model.calls["investigator"] == 1 and stack.model.calls["reviewer"] == 1

        # The crew words a plain answer; the output guard lets it stand.
        worded = await app.run("Where is order 1042?", actor=STAFF)
        assert worded.answer.startswith("Thanks for getting in touch!"), worded.answer
        [output] = [v for v in worded.verdicts if v["guard"] == "output"]
        assert "worded_by: drafting" in output["reasons"]

        # A draft promising a refund and a voucher no fact backs: the template answers.
        stack.model.promise = True
        promised = await app.run("Where is order 1042 today?", actor=STAFF)
        assert "voucher" not in promised.answer and "1042" in promised.answer
        refused = [v for v in promised.verdicts if v["guard"] == "output" and not v["passed"]]
        assert refused and refused[0]["reasons"][0].startswith("wording_refused:")
        stack.model.promise = False

        # The crew's model throttled: one request from the crew, the governor's attempts at
        # the model, and the template's answer.
        stack.model.throttled = {"writer", "editor"}
        before = stack.model.calls["writer"] + stack.model.calls["editor"]
        throttled = await app.run("Where is order 1042 now?", actor=STAFF)
        calls = stack.model.calls["writer"] + stack.model.calls["editor"] - before
        assert calls == settings.policy("model").attempts, calls
        assert throttled.status == "completed" and "1042" in throttled.answer
        [final] = [v for v in throttled.verdicts if v["guard"] == "output"]
        assert "template_used: drafting unavailable (run_failed)" in final["reasons"]
        stack.model.throttled = set()

        # The claims team down: its step degrades, the claim goes to a human.
        for server in stack.servers.values():
            assert server.denied() == []  # no telemetry, no downloads: nothing left loopback
        stack.servers["claims"].stop()
        alone = await app.run("Order 1034 arrived with the keycap set missing. "
                              "Please refund $7.", actor=CUSTOMER_6)
        assert alone.status == "awaiting_approval" and alone.degraded == ["claims"], alone.answer
        reasons = (alone.pending_approval or {})["reasons"]
        assert any(r.startswith("caution: claim_unassessed") for r in reasons), reasons


def test_the_demo_and_the_chaos_scenarios_run(tmp_path: Path) -> None:
    cli = [str(Path(sys.executable).with_name("interlock"))]
    env = {"PATH": str(Path(sys.executable).parent), "INTERLOCK_HOME": str(tmp_path)}
    demo = subprocess.run([*cli, "demo", "--foreign"], capture_output=True, text=True,
                          timeout=300, env=env)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-2000:]
    for line in ("caution: claim_needs_evidence", "wording_refused:",
                 "template_used: drafting unavailable", "degraded: claims"):
        assert line in demo.stdout, line
    chaos = subprocess.run([*cli, "chaos", "remote-down", "--requests", "1"],
                           capture_output=True, text=True, timeout=300, env=env)
    assert chaos.returncode == 0, chaos.stdout[-3000:] + chaos.stderr[-2000:]
    assert "governed" in chaos.stdout and "native" in chaos.stdout
