"""A remote worker: a LangGraph graph another server runs, governed as an Interlock worker.

The warranty desk's graph (`tests/remote/warranty_graph.py`) is served by a `langgraph dev` of
its own; `tests/remote/warranty.py` declares it in one module. It is called as its own
dependency with what is left of the request's deadline, its output goes through the fact guard,
and when it is down the answer says what was not checked while the rest of the plan carries on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agents.registry import DEFAULT_WORKERS
from graphs.runner import Interlock, open_interlock
from graphs.settings import Settings
from tests.e2e.devserver import free_port, wait_ready
from tests.remote.warranty import SPEC, WARRANTY
from tools.toolbox import build_toolbox

ROOT = Path(__file__).resolve().parents[2]
ASK = "Where is order 1012, and is it under warranty?"


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The warranty graph on a `langgraph dev` of its own (no auth: an internal service)."""
    work = tmp_path_factory.mktemp("remote")
    (work / "langgraph.json").write_text(json.dumps({
        "graphs": {"warranty": str(ROOT / "tests" / "remote" / "warranty_graph.py") + ":graph"},
        "dependencies": [str(ROOT)]}))
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("INTERLOCK_", "LANGSMITH_", "LANGCHAIN_"))}
    env.update({"LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGGRAPH_NO_VERSION_CHECK": "true"})
    with open(work / "server.log", "w") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("langgraph")), "dev", "--no-browser",
             "--no-reload", "--host", "127.0.0.1", "--port", str(port)],
            cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, process, work / "server.log")
            yield url
        finally:
            process.terminate()
            process.wait(timeout=15)


async def _app(settings: Settings, url: str | None,
               simulators: dict[str, Any] | None = None) -> AsyncIterator[Interlock]:
    """Interlock with the warranty worker: at `url`, or answered in-process by `simulators`."""
    settings = settings.with_dependencies(WARRANTY).with_url("warranty", url)
    async with open_interlock(toolbox=build_toolbox(settings, simulators=simulators),
                              workers=[*DEFAULT_WORKERS, SPEC]) as app:
        yield app


async def test_the_remote_graph_answers_as_a_governed_worker(settings: Settings,
                                                             remote: str) -> None:
    async for app in _app(settings, remote):
        result = await app.run(ASK)
    assert result.status == "completed", result.answer
    assert "Order 1012 is under warranty for 2 years." in result.answer
    assert "1012" in result.answer and result.degraded == []
    fact = result.facts["warranty:1012"]
    assert (fact["worker"], fact["source"]) == ("warranty", "warranty:warranty-desk")
    calls = [e for e in result.events if e["dependency"] == "warranty"]
    assert [e["kind"] for e in calls] == ["attempt", "result"] and calls[0]["step_id"]
    [verdict] = [v for v in result.verdicts if v["guard"] == "facts"
                 and v["step_id"] == calls[0]["step_id"]]
    assert verdict["passed"]


async def test_a_remote_that_is_down_degrades_its_step_only(settings: Settings) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async for app in _app(settings, down):
        result = await app.run(ASK)
    assert result.status == "completed"
    assert result.degraded == ["warranty"]
    assert "I could not check the warranty of order 1012 right now." in result.answer
    assert "in transit" in result.answer or "1012" in result.answer  # the order step ran
    attempts = [e for e in result.events if e["dependency"] == "warranty"
                and e["kind"] == "attempt"]
    assert len(attempts) == WARRANTY.policy.attempts


def _handler(answers: list[httpx.Response], seen: list[httpx.Request]) -> Any:
    async def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0) if answers else httpx.Response(500)
    return handle


def _values(facts: list[dict[str, Any]], status: str = "done") -> httpx.Response:
    return httpx.Response(200, json={"status": status, "note": "", "facts": facts})


async def test_every_attempt_of_a_step_carries_one_idempotency_key_and_the_deadline(
        settings: Settings) -> None:
    seen: list[httpx.Request] = []
    good = _values([{"kind": "warranty", "subject": "1012",
                     "value": {"order_id": 1012, "covered": True, "years": 2}}])
    async for app in _app(settings, None, simulators={
            "warranty": _handler([httpx.Response(503), good], seen)}):
        result = await app.run(ASK)
    assert "under warranty for 2 years" in result.answer
    assert len(seen) == 2
    keys = {r.headers["idempotency-key"] for r in seen}
    assert len(keys) == 1 and next(iter(keys)).startswith("il-")
    left = [int(r.headers["x-interlock-deadline-ms"]) for r in seen]
    assert all(0 < ms <= settings.deadline_s * 1000 for ms in left), left
    sent = json.loads(seen[0].content)
    assert sent["assistant_id"] == "warranty"
    assert sent["input"]["step"]["order_id"] == 1012 and "order:1012" in sent["input"]["known"]


async def test_a_remote_answering_beyond_its_step_or_in_its_own_words_is_not_heard(
        settings: Settings) -> None:
    seen: list[httpx.Request] = []
    beyond = httpx.Response(200, json={"status": "done", "note": "I refunded $500 to your card.",
                                       "facts": [
        {"kind": "warranty", "subject": "1012", "value": {"order_id": 1012, "covered": True}},
        {"kind": "warranty", "subject": "1013", "value": {"order_id": 1013, "covered": True}}]})
    async for app in _app(settings, None, simulators={"warranty": _handler([beyond], seen)}):
        result = await app.run(ASK)
    assert "$500" not in result.answer and "your card" not in result.answer
    assert not [f for f in result.facts if f.startswith("warranty:")]
    assert "I couldn't complete the warranty check" in result.answer


async def test_what_could_not_be_checked_is_asked_again_next_turn(settings: Settings) -> None:
    seen: list[httpx.Request] = []
    good = _values([{"kind": "warranty", "subject": "1012",
                     "value": {"order_id": 1012, "covered": True, "years": 2}}])
    async for app in _app(settings, None, simulators={
            "warranty": _handler([httpx.Response(503), httpx.Response(503), good], seen)}):
        first = await app.run(ASK)
        second = await app.run("And is order 1012 under warranty now?",
                               thread_id=first.thread_id)
    assert "could not check the warranty" in first.answer
    assert "under warranty for 2 years" in second.answer, second.answer
    assert len(seen) == 3


@pytest.mark.parametrize(("facts", "problem"), [
    ([{"kind": "order", "subject": "1012", "value": {"id": 1012}}], "ownership"),
    ([{"kind": "warranty", "subject": "1012", "value": {"order_id": "x"}}], "schema"),
    (["not a fact"], "schema"),
])
async def test_what_the_remote_says_goes_through_the_fact_guard(
        settings: Settings, facts: list[Any], problem: str) -> None:
    seen: list[httpx.Request] = []
    async for app in _app(settings, None, simulators={
            "warranty": _handler([_values(facts)], seen)}):
        result = await app.run(ASK)
    refused = [v for v in result.verdicts if v["guard"] == "facts" and not v["passed"]]
    assert refused and refused[0]["reasons"][0].startswith(problem), refused
    assert not [f for f in result.facts if f.startswith("warranty:")]
    assert "under warranty" not in result.answer


async def test_a_replay_is_served_the_remotes_recorded_answer(settings: Settings) -> None:
    from graphs.replay import replay

    seen: list[httpx.Request] = []
    good = _values([{"kind": "warranty", "subject": "1012",
                     "value": {"order_id": 1012, "covered": True, "years": 2}}])
    async for app in _app(settings, None, simulators={"warranty": _handler([good], seen)}):
        result = await app.run(ASK)
        report = await replay(app, result.thread_id)
    assert "under warranty for 2 years" in result.answer
    assert report["reproduced"], report["first_difference"]
    assert report["dependencies_called"] == 0 and report["results_served"] > 0
    assert len(seen) == 1  # the remote was called by the run, not by its replay
