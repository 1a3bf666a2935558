"""A team extends Interlock from its own code alone: a dependency, a worker and a guard stage.

The warehouse API (`tests/extension/warehouse.py`: one `Dependency` with its client and
simulator), a returns worker that uses it (`returns.py`: one `WorkerSpec`) and a guard stage
(`competitor.py`: one `GuardStage`) go through the planner, the plan guard, the supervisor, the
fact guard, the responder and the output guard, survive the warehouse going down, and replay.
No product module knows them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from agents.registry import DEFAULT_WORKERS
from graphs.core.actors import Actor
from graphs.core.clock import iso
from graphs.core.state import InterlockState, Verdict
from graphs.replay import replay
from graphs.runner import Interlock, open_interlock
from graphs.settings import Settings
from guards.intake import INTAKE
from guards.output import OUTPUT
from guards.plan import PLAN
from guards.registry import DEFAULT_GUARDS
from guards.stages import GuardStage, StageDeps, StageResult
from tests.conftest import fast_settings
from tests.extension.competitor import COMPETITOR
from tests.extension.returns import SPEC as RETURNS
from tests.extension.warehouse import WAREHOUSE
from tools.policy import FaultSpec

CUSTOMER_9 = Actor(kind="customer", customer_id=9)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def extended(tmp_path: Path) -> AsyncIterator[Interlock]:
    async with open_interlock(fast_settings(tmp_path / "home"), dependencies=[WAREHOUSE],
                              workers=[*DEFAULT_WORKERS, RETURNS],
                              guards=[*DEFAULT_GUARDS, COMPETITOR]) as app:
        yield app


async def test_a_new_worker_answers_through_every_stage(extended: Interlock) -> None:
    result = await extended.run("What is the return status of order 1012 because it broke?",
                                actor=CUSTOMER_9)
    assert result.status == "completed", result.answer
    assert result.plan is not None
    [step] = [s for s in result.plan["steps"] if s["worker"] == "returns"]
    assert step["args"] == {"reason": "it broke"}
    assert "The return of order 1012 is open under RMA-1012." in result.answer
    fact = result.facts["return:1012"]
    assert (fact["worker"], fact["source"], fact["scope"]) == ("returns", "warehouse",
                                                               "customer:9")
    guards = {v["guard"] for v in result.verdicts}
    assert {"intake", "competitor", "plan", "facts", "output"} <= guards
    sim = extended.toolbox.simulators["warehouse"]
    assert sim.stats.calls == 1


async def test_the_output_guard_holds_the_new_facts_to_what_they_say(
        extended: Interlock) -> None:
    from guards.output import check_answer

    result = await extended.run("What is the return status of order 1012?", actor=CUSTOMER_9)
    facts = list(result.facts.values())
    text, problems = check_answer({"statements": ["Your return is open under RMA-9999."],
                                   "notices": []}, facts, RETURNS.grounds)
    assert problems == ["unbacked_rma: RMA-9999"] and "RMA-9999" not in text


async def test_the_plan_guard_checks_the_new_workers_arguments(extended: Interlock) -> None:
    from guards.plan import plan_problems

    step = {"id": "t1.s2", "worker": "returns", "order_id": 1012, "amount_cents": None,
            "depends_on": ["t1.s1"], "args": {"reason": "lost in transit", "rush": True}}
    orders = {"id": "t1.s1", "worker": "orders", "order_id": 1012, "amount_cents": None,
              "depends_on": []}
    plan = {"source": "model", "intents": [], "steps": [orders, step], "waves": []}
    problems = plan_problems(plan, "return status of order 1012 please", turn=1,  # type: ignore[arg-type]
                             settings=extended.settings,
                             workers={w.name: w for w in [*DEFAULT_WORKERS, RETURNS]})
    assert problems and problems[0].startswith("bad_args: t1.s2 (returns) rush")
    step["args"] = {"reason": "lost in transit"}
    problems = plan_problems(plan, "return status of order 1012 please", turn=1,  # type: ignore[arg-type]
                             settings=extended.settings,
                             workers={w.name: w for w in [*DEFAULT_WORKERS, RETURNS]})
    assert problems == ["unmentioned_arg: reason='lost in transit' does not appear in the "
                        "request"]


async def test_the_new_guard_stage_refuses_and_says_why(extended: Interlock) -> None:
    result = await extended.run("MegaMart refunds faster, where is order 1012?",
                                actor=CUSTOMER_9)
    assert result.status == "refused"
    assert "A member of our team will answer you" in result.answer
    [verdict] = [v for v in result.verdicts if v["guard"] == "competitor"]
    assert verdict["action"] == "refuse" and verdict["reasons"][0].startswith(
        "competitor_named: MegaMart")
    assert extended.toolbox.simulators["warehouse"].stats.calls == 0


def _audit(seen: list[str]) -> GuardStage:
    """A plan stage that records which plan it saw (the candidate, or the guarded plan)."""

    def build(deps: StageDeps) -> Any:
        async def audit(state: InterlockState) -> StageResult:
            seen.append("plan" if state.get("plan") else
                        "candidate" if state.get("candidate_plan") else "none")
            return StageResult(verdicts=[Verdict(
                guard="audit", passed=True, action="allow", reasons=["seen"], fact_ids=[],
                step_id=None, turn=state["request"]["turn"], at=iso(deps.clock.now()))])
        return audit

    return GuardStage(name="audit", at="plan", build=build)


@pytest.mark.parametrize("before_the_plan_guard", [True, False])
async def test_a_plan_stage_runs_where_it_is_placed(tmp_path: Path,
                                                   before_the_plan_guard: bool) -> None:
    seen: list[str] = []
    audit = _audit(seen)
    guards = ([INTAKE, audit, PLAN, OUTPUT] if before_the_plan_guard
              else [INTAKE, PLAN, audit, OUTPUT])
    async with open_interlock(fast_settings(tmp_path / "home"), guards=guards) as app:
        result = await app.run("Where is order 1012?", actor=CUSTOMER_9)
    assert result.status == "completed" and "1012" in result.answer
    assert seen == ["candidate" if before_the_plan_guard else "plan"]
    order = [v["guard"] for v in result.verdicts if v["guard"] in ("audit", "plan")]
    assert order == (["audit", "plan"] if before_the_plan_guard else ["plan", "audit"])


def test_a_worker_that_would_shadow_another_s_checks_is_refused_when_built(
        tmp_path: Path) -> None:
    from agents.refunds import SPEC as REFUNDS
    from graphs.core.answers import Ground
    from graphs.supervisor import build_graph

    settings = fast_settings(tmp_path / "home")
    lax = Ground(name="order", stated=lambda sentence: [], backed=lambda fact: [])
    shadowing = [(replace(RETURNS, grounds=(*RETURNS.grounds, lax)), "two grounds are named"),
                 (replace(RETURNS, owns={**RETURNS.owns, **REFUNDS.owns}), "owned by both"),
                 (replace(RETURNS, name="orders"), "two workers are named")]
    for spec, why in shadowing:
        with pytest.raises(ValueError, match=why):
            build_graph(settings=settings, dependencies=[WAREHOUSE],
                        workers=[*DEFAULT_WORKERS, spec])


def test_a_graph_without_the_plan_guard_is_refused_when_built(tmp_path: Path) -> None:
    from graphs.supervisor import build_graph

    with pytest.raises(ValueError, match="plan guard"):
        build_graph(settings=fast_settings(tmp_path / "home"), guards=[INTAKE, OUTPUT])


async def test_the_new_dependency_down_opens_its_breaker_and_the_answer_says_so(
        tmp_path: Path) -> None:
    settings = replace(fast_settings(tmp_path / "home"),
                       faults={"warehouse": FaultSpec(fail=1.0)})
    async with open_interlock(settings, dependencies=[WAREHOUSE],
                              workers=[*DEFAULT_WORKERS, RETURNS]) as app:
        answers = [await app.run(f"What is the return status of order {n}?",
                                 actor=Actor(kind="customer", customer_id=c))
                   for n, c in ((1012, 9), (1014, 9), (1017, 9), (1029, 9))]
        for answer in answers:
            assert answer.status == "completed" and answer.degraded == ["warehouse"]
            assert "Could not be checked right now: warehouse." in answer.answer
            assert "RMA" not in answer.answer and "Order 10" in answer.answer
        sim = app.toolbox.simulators["warehouse"]
        # 2 attempts of the first request open the breaker (fail_max=2): the rest go nowhere.
        assert sim.stats.calls == 2
        assert app.toolbox.governor.breaker("warehouse").state == "open"  # type: ignore[attr-defined]
        transitions = [e for a in answers for e in a.events if e["kind"] == "breaker"]
        assert transitions and transitions[0]["dependency"] == "warehouse"


async def test_a_thread_with_the_new_worker_replays_without_calling_anything(
        extended: Interlock) -> None:
    first = await extended.run("What is the return status of order 1012?", actor=CUSTOMER_9)
    await extended.run("Where is order 1014?", thread_id=first.thread_id, actor=CUSTOMER_9)
    calls = extended.toolbox.simulators["warehouse"].stats.calls
    report = await replay(extended, first.thread_id)
    assert report["reproduced"], report["first_difference"]
    assert report["dependencies_called"] == 0 and report["results_served"] > 0
    assert extended.toolbox.simulators["warehouse"].stats.calls == calls


def test_the_extension_needs_no_product_module(tmp_path: Path) -> None:
    # The settings read the new dependency's own variables, derived from its name.
    settings = Settings.from_env({"INTERLOCK_DEP_WAREHOUSE": "timeout=0.5,fail_max=4",
                                  "INTERLOCK_FAULTS_WAREHOUSE": "fail=0.5",
                                  "INTERLOCK_WAREHOUSE_URL": "http://127.0.0.1:9/"},
                                 dependencies=(*Settings().dependencies, WAREHOUSE))
    assert settings.policy("warehouse").fail_max == 4
    assert settings.fault("warehouse").fail == 0.5
    assert settings.url("warehouse") == "http://127.0.0.1:9"


EXTENSIONS = "tests.extension.warehouse,tests.extension.returns,tests.extension.competitor"


def test_the_extensions_variable_registers_them_for_the_cli_and_the_server(
        tmp_path: Path) -> None:
    """INTERLOCK_EXTENSIONS: what `interlock`, `langgraph dev` and Settings.from_env read."""
    from tests.e2e.test_cli import as_json, cli

    home = tmp_path / "home"
    served = subprocess.Popen(
        [sys.executable, "-m", "graphs.cli", "simulate", "warehouse", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "INTERLOCK_HOME": str(home), "INTERLOCK_EXTENSIONS": EXTENSIONS})
    try:
        assert served.stdout is not None
        url = served.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), served.stderr.read() if served.stderr else ""
        done = cli(home, "run", "--json", "--customer", "9",
                   "What is the return status of order 1012?",
                   INTERLOCK_EXTENSIONS=EXTENSIONS, INTERLOCK_WAREHOUSE_URL=url)
        assert done.returncode == 0, done.stderr
        result = as_json(done)
        assert result["status"] == "completed"
        assert "The return of order 1012 is open under RMA-1012." in result["answer"]
        refused = as_json(cli(home, "run", "--json", "--customer", "9",
                              "Shopzilla says my order 1012 is lost",
                              INTERLOCK_EXTENSIONS=EXTENSIONS))
        assert refused["status"] == "refused"
        stats = httpx.get(f"{url}/_sim/stats", timeout=5).json()
        assert stats["calls"] == 1 and stats["statuses"] == {"200": 1}
    finally:
        served.terminate()
        served.wait(timeout=10)
    # Without the variable the desk knows no warehouse, and says which ones it has.
    missing = cli(home, "simulate", "warehouse")
    assert missing.returncode == 2
    assert "no simulator for 'warehouse' (simulated: carrier, payments, model)" in missing.stderr
    broken = cli(home, "run", "hi", INTERLOCK_EXTENSIONS="tests.extension.nowhere")
    assert broken.returncode == 2 and "INTERLOCK_EXTENSIONS" in broken.stderr
    assert "tests.extension.nowhere" in broken.stderr
