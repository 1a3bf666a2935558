"""The foreign agents' scenarios, offline: `interlock demo --foreign` and two chaos scenarios.

`interlock chaos crew-throttled | remote-down` runs each governed, then with the framework's
own defaults. A scripted model answers behind the gateway (`graphs.foreign`).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from graphs.core.actors import STAFF, Actor
from graphs.demo import paid, transcript
from graphs.foreign import (
    QUIET,
    ROOT,
    ForeignStack,
    ScriptedModel,
    foreign_stack,
    missing_environments,
    start_server,
)
from graphs.runner import open_interlock
from graphs.settings import Settings

__all__ = ["FOREIGN_CHAOS", "ForeignChaosReport", "format_foreign_report", "play_foreign",
           "run_foreign_chaos"]

_CUSTOMER_6 = Actor(kind="customer", customer_id=6)
FOREIGN_CHAOS = ("crew-throttled", "remote-down")


@dataclass(frozen=True)
class _Scene:
    title: str
    actor: Actor
    message: str
    setup: Callable[[ForeignStack], None]
    approve: bool | None = None


def _set(verdict: str = "plausible", promise: bool = False, throttled: tuple[str, ...] = (),
         stop: str | None = None) -> Callable[[ForeignStack], None]:
    def setup(stack: ForeignStack) -> None:
        stack.model.verdict, stack.model.promise = verdict, promise
        stack.model.throttled = set(throttled)
        if stop is not None:
            stack.servers[stop].stop()
    return setup


SCENES = [
    _Scene("A claim the claims team (AutoGen) doubts: the $5 refund waits for a human",
           _CUSTOMER_6, "My order 1034 arrived damaged: the headphones are cracked. "
           "Please refund $5.", _set("needs_evidence"), approve=True),
    _Scene("A claim the team finds plausible: the small refund is approved automatically",
           _CUSTOMER_6, "Order 1034: the keycap set arrived broken. Please refund $6.",
           _set("plausible")),
    _Scene("The crew's (CrewAI) draft promises what no fact backs: the output guard refuses it",
           STAFF, "Where is order 1042?", _set(promise=True)),
    _Scene("The crew's model is throttled: the gateway refuses after its own attempts, the "
           "template answers", STAFF, "Where is order 1042 now?",
           _set(throttled=("writer", "editor"))),
    _Scene("The claims team is down: its step degrades, the rest of the plan carries on, and "
           "the claim it could not assess goes to a human", _CUSTOMER_6,
           "Order 1034 arrived with the keycap set missing. Please refund $7.",
           _set(stop="claims"), approve=False),
]


async def play_foreign(settings: Settings) -> int:
    """Play the foreign agents' scenes against a fresh home; return the exit code."""
    if missing := missing_environments():
        print(f"The foreign environments are not built ({', '.join(missing)}): "
              f"run `make foreign` (or `make demo-foreign`).")
        return 2
    home = settings.home / "demo-foreign"
    shutil.rmtree(home, ignore_errors=True)
    base = replace(settings, home=home, urls={}, model="rules")
    print(f"Interlock foreign agents demo · home {home} · a scripted model behind the gateway\n")
    async with foreign_stack(base, home=home / "foreign") as stack:
        print(f"  model (scripted) {stack.model_url} · gateway {stack.gateway_url}")
        for name, server in stack.servers.items():
            print(f"  {name} worker: {server.url} (own environment, network denied)")
        print()
        async with open_interlock(stack.settings(base)) as app:
            for number, scene in enumerate(SCENES, start=1):
                print(f"[{number}] {scene.title}")
                scene.setup(stack)
                before = dict(stack.model.calls)
                print(f"  {'staff' if scene.actor['kind'] == 'staff' else 'customer 6'}> "
                      f"{scene.message}")
                result = await app.run(scene.message, actor=scene.actor)
                shown = transcript(result)
                if result.status == "awaiting_approval" and scene.approve is not None:
                    verb = "--approve" if scene.approve else "--reject"
                    print(f"  staff> interlock resume {result.thread_id} {verb}")
                    result = await app.resume(result.thread_id, approve=scene.approve,
                                              note="photos received and checked"
                                              if scene.approve else "asked for photos first")
                    transcript(result, shown, plan=False)
                paid(app, result)
                calls = {k: v - before.get(k, 0) for k, v in stack.model.calls.items()
                         if v - before.get(k, 0)}
                print("    model calls, as the model counted them: "
                      + (", ".join(f"{k} {v}" for k, v in sorted(calls.items())) or "none"))
                print()
            for server in stack.servers.values():
                if server.process.poll() is None and (denied := server.denied()):
                    print(f"  {server.name}: connections refused: {denied}")
    print("Every foreign agent's model call went through the gateway; their own retries are "
          "off.")
    return 0


@dataclass
class ForeignChaosReport:
    """Governed vs the framework's own defaults, for one foreign-agent scenario."""

    scenario: str
    requests: int
    governed: dict[str, Any] = field(default_factory=dict)
    native: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """As `--json` prints it."""
        return {"scenario": self.scenario, "requests": self.requests,
                "governed": self.governed, "native": self.native}


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(1000 * statistics.median(ordered), 1),
            "max_ms": round(1000 * ordered[-1], 1)}


async def _governed(settings: Settings, scenario: str, requests: int) -> dict[str, Any]:
    model = ScriptedModel(throttled={"writer", "editor"} if scenario == "crew-throttled"
                          else set())
    workers = ("drafting",) if scenario == "crew-throttled" else ("claims",)
    async with foreign_stack(settings, model=model, workers=workers) as stack:
        if scenario == "remote-down":
            stack.servers["claims"].stop()
        latencies: list[float] = []
        answers: list[str] = []
        degraded: set[str] = set()
        async with open_interlock(stack.settings(settings)) as app:
            for n in range(requests):
                text = ("Where is order 1042?" if scenario == "crew-throttled" else
                        f"Order 1034 arrived broken. Please refund ${5 + n % 3}.")
                began = time.perf_counter()
                result = await app.run(text, actor=STAFF)
                latencies.append(time.perf_counter() - began)
                answers.append(result.answer)
                degraded.update(result.degraded)
        logical = requests  # one logical model call (the writer's first) per request
        crew_calls = stack.model.calls["writer"] + stack.model.calls["editor"]
        figures: dict[str, Any] = {
            **_ms(latencies), "answered": sum(bool(a.strip()) for a in answers),
            "degraded": sorted(degraded), "last_answer": answers[-1]}
        if scenario == "crew-throttled":
            figures["model_calls_per_logical_call"] = round(crew_calls / logical, 2)
        return figures


def _native_crew(model_url: str, home: str) -> dict[str, Any]:
    """CrewAI with its defaults against the throttled model (measured in its environment)."""
    python = ROOT / ".crewai-venv" / "bin" / "python"
    done = subprocess.run([str(python), str(ROOT / "foreign" / "crewai" / "measure.py"),
                           "--model-url", model_url, "--modes", "429"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={**QUIET, "PATH": os.environ.get("PATH", ""), "HOME": home})
    if done.returncode != 0:
        return {"error": done.stderr[-500:]}
    said = json.loads(done.stdout)["native"]["429"]
    return {"model_calls_per_logical_call": said["requests"],
            "p50_ms": round(1000 * said["seconds"], 1), "answered": 0,
            "outcome": said["outcome"]}


async def _native_remote(url: str, requests: int) -> dict[str, Any]:
    """A LangGraph graph calling the claims graph with `RemoteGraph` and the SDK's defaults."""
    from langgraph.graph import END, START, StateGraph
    from langgraph.pregel.remote import RemoteGraph
    from langgraph_sdk import get_client
    from typing_extensions import TypedDict

    sent: list[httpx.Request] = []
    client = get_client(url=url, api_key=None)

    async def count(request: httpx.Request) -> None:
        sent.append(request)

    client.http.client.event_hooks["request"].append(count)
    remote = RemoteGraph("claims", client=client)

    class State(TypedDict, total=False):
        text: str
        claim: Any

    async def assess(state: State) -> dict[str, Any]:
        return {"claim": await remote.ainvoke({"request": {"text": state["text"], "turn": 1},
                                               "step": {"order_id": 1034}, "known": {}})}

    builder = StateGraph(State)
    builder.add_node("assess", assess)
    builder.add_edge(START, "assess")
    builder.add_edge("assess", END)
    graph = builder.compile()
    latencies, errors = [], []
    for _ in range(requests):
        began = time.perf_counter()
        try:
            await graph.ainvoke({"text": "Order 1034 arrived broken. Please refund $5."})
        except Exception as exc:  # what the framework's defaults do: the request fails
            errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
        latencies.append(time.perf_counter() - began)
    # Under each request, langgraph_sdk's transport retries a refused connection (retries=5,
    # in langgraph_sdk/_async/client.py): that is where the seconds go.
    return {**_ms(latencies), "answered": requests - len(errors),
            "sdk_requests_per_request": round(len(sent) / requests, 2),
            "error": errors[-1] if errors else None}


async def run_foreign_chaos(settings: Settings, scenario: str, *, requests: int = 5
                            ) -> ForeignChaosReport:
    """Run a foreign-agent scenario governed, then with the framework's own defaults."""
    if missing := missing_environments():
        raise RuntimeError(f"the foreign environments are not built ({', '.join(missing)}): "
                           f"run `make foreign`")
    base = replace(settings, urls={}, model="rules")
    report = ForeignChaosReport(scenario=scenario, requests=requests)
    report.governed = await _governed(base, scenario, requests)
    if scenario == "crew-throttled":
        model = ScriptedModel(throttled={"writer", "editor", "other"})
        async with foreign_stack(base, model=model, workers=()) as stack:
            report.native = await asyncio.to_thread(_native_crew, stack.model_url,
                                                    str(settings.home / "chaos-crew"))
    else:
        async with foreign_stack(base, workers=()) as stack:
            server = await asyncio.to_thread(start_server, "claims",
                                             settings.home / "chaos-remote",
                                             stack.gateway_url, stack.key)
            server.stop()  # killed: nothing listens there now
            report.native = await _native_remote(server.url, requests)
    return report


def format_foreign_report(report: ForeignChaosReport) -> str:
    """The report as a person reads it."""
    lines = [f"{report.scenario}: {report.requests} requests, governed vs the framework's "
             f"own defaults"]
    for mode, figures in (("governed", report.governed), ("native", report.native)):
        shown = ", ".join(f"{k}={v}" for k, v in figures.items() if k != "last_answer")
        lines.append(f"  {mode:>8}: {shown}")
        if figures.get("last_answer"):
            lines.extend(f"            > {ln}" for ln in figures["last_answer"].splitlines())
    return "\n".join(lines)
