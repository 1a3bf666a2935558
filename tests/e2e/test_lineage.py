"""Lineage: history, asof, diff, explain; replay as a determinism check; fork.

Every test runs on both savers, SQLite and Postgres (LangGraph's own saver on a database of
the test's own), as LangGraph's tests run each saver: lineage must read the same on either.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace as with_changes
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from graphs.cli import main
from graphs.core.errors import InputError, NotFoundError
from graphs.replay import fork, replay
from graphs.runner import Interlock, open_interlock
from graphs.settings import Settings
from tests.conftest import fast_settings
from tools.recording import RecordedResults
from tools.toolbox import build_toolbox


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """The test's settings on each saver in turn (Postgres: a schema of the test's own)."""
    base = fast_settings(tmp_path / "home")
    if request.param == "postgres":
        return with_changes(base, database_url=request.getfixturevalue("postgres_url"))
    return base


async def conversation(app: Interlock) -> str:
    first = await app.run("Where is my order 1042?")
    await app.run("Refund $120 on order 1001", thread_id=first.thread_id)
    done = await app.resume(first.thread_id, approve=True, note="receipt checked")
    assert done.status == "completed"
    return first.thread_id


async def test_history_lists_every_step_with_its_writes_and_verdicts(app: Interlock) -> None:
    thread = await conversation(app)
    steps = await app.history(thread)
    assert [s["step"] for s in steps] == sorted(s["step"] for s in steps)
    ran = [n for s in steps for n in s["nodes"]]
    assert ran.count("intake_guard") == 2 and ran.count("output_guard") == 2
    guards = [v["guard"] for s in steps for v in s["verdicts"]]
    assert guards.count("approval") == 2  # escalate, then allow
    assert any("facts" in s["writes"].get("fact_guard", []) for s in steps)
    waiting = [s for s in steps if s["interrupts"]]
    assert waiting and waiting[0]["interrupts"][0]["amount_cents"] == 12000


async def test_asof_answers_what_was_known_at_a_past_step(app: Interlock) -> None:
    thread = await conversation(app)
    steps = await app.history(thread)
    first_turn_end = next(s["step"] for s in steps if "output_guard" in s["nodes"])
    view = await app.asof(thread, step=first_turn_end)
    assert set(view["facts"]) == {"order:1042", "shipment:1042"}
    fact = view["facts"]["shipment:1042"]
    assert fact["source"] == "carrier" and fact["as_of"] and fact["worker"] == "shipping"
    assert view["plan"]["steps"][0]["id"] == "t1.s1" and view["pending_approvals"] == []
    assert [v["guard"] for v in view["verdicts"]][-1] == "output"
    waiting_step = next(s["step"] for s in steps if s["interrupts"])
    view = await app.asof(thread, step=waiting_step)
    assert view["pending_approvals"][0]["order_id"] == 1001
    assert "refund:t2.s3" not in view["facts"]
    moment = datetime.fromisoformat(str(steps[first_turn_end + 1]["created_at"]))
    by_time = await app.asof(thread, at=moment)
    assert by_time["step"] == first_turn_end
    with pytest.raises(InputError):
        await app.asof(thread, at=moment - timedelta(days=1))
    with pytest.raises(InputError):
        await app.asof(thread, step=10_000)
    with pytest.raises(NotFoundError):
        await app.asof("no-such-thread", step=1)


async def test_diff_shows_what_a_step_changed(app: Interlock) -> None:
    result = await app.run("Where is my order 1042?")
    steps = await app.history(result.thread_id)
    guard_step = next(s["step"] for s in steps if "fact_guard" in s["nodes"])
    change = await app.diff(result.thread_id, guard_step - 1, guard_step)
    facts = change["changes"]["facts"]
    assert sorted(facts["added"]) == ["order:1042", "shipment:1042"]
    assert facts["removed"] == [] and facts["changed"] == {}
    assert len(change["changes"]["verdicts"]["appended"]) == 2


async def test_explain_names_the_producer_and_every_use(app: Interlock) -> None:
    thread = await conversation(app)
    story = await app.explain(thread, "shipment:1042")
    [version] = story["versions"]
    made = version["produced_by"]
    assert made["worker"] == "shipping" and made["step_id"] == "t1.s2"
    assert made["plan_step"]["order_id"] == 1042
    calls = version["dependency_calls"]
    assert any(c["kind"] == "result" and c["dependency"] == "carrier" for c in calls)
    assert any(c["kind"] == "attempt" and c["detail"]["outcome"] == "ok" for c in calls)
    assert {v["guard"] for v in story["used_by"]["verdicts"]} >= {"facts", "output"}
    order = await app.explain(thread, "order:1001")
    assert [s["worker"] for s in order["used_by"]["steps"]] == ["refunds"]
    assert any(v["guard"] == "approval" for v in order["used_by"]["verdicts"])
    refund = await app.explain(thread, "refund:t2.s3")
    [made] = [c for c in refund["versions"][0]["dependency_calls"] if c["kind"] == "result"
              and c["detail"]["action"] == "refund"]
    assert made["detail"]["args"]["idempotency_key"].startswith("il_")  # key and outcome
    assert made["detail"]["result"]["status"] == "succeeded"
    with pytest.raises(NotFoundError):
        await app.explain(thread, "order:9999")


async def test_replay_reproduces_an_untouched_run_without_calling_anything(
        app: Interlock) -> None:
    thread = await conversation(app)
    await app.run("", thread_id=thread)  # a refused input is part of the record too
    assert app.toolbox.carrier_sim is not None and app.toolbox.payments_sim is not None
    calls = (app.toolbox.carrier_sim.stats.calls, app.toolbox.payments_sim.stats.calls)
    report = await replay(app, thread)
    assert report["reproduced"], report["first_difference"]
    assert report["steps_compared"] > 20 and report["results_served"] > 0
    assert (app.toolbox.carrier_sim.stats.calls, app.toolbox.payments_sim.stats.calls) == calls
    later = await replay(app, thread, from_step=(await app.history(thread))[12]["step"])
    assert later["reproduced"], later["first_difference"]


async def test_replay_points_at_the_first_step_an_altered_result_changes(
        app: Interlock) -> None:
    thread = await conversation(app)
    events = (await app.state(thread)).values["events"]
    altered = copy.deepcopy(events)
    [track] = [e for e in altered if e["kind"] == "result" and e["dependency"] == "carrier"]
    track["detail"]["result"]["status"] = "delivered"  # the record now says otherwise
    report = await replay(app, thread, results=RecordedResults(altered))
    assert not report["reproduced"]
    difference = report["first_difference"]
    worker_step = next(s["step"] for s in await app.history(thread)
                       if "shipping" in s["nodes"])
    assert difference["step"] == worker_step and difference["node"] == "shipping"
    assert difference["keys"] == ["inbox"]


async def test_fork_starts_a_new_thread_and_leaves_the_original_untouched(
        app: Interlock) -> None:
    thread = await conversation(app)
    before = await app.history(thread)
    waiting_step = next(s["step"] for s in before if s["interrupts"])
    new_thread, result = await fork(app, thread, from_step=waiting_step)
    assert result is None
    assert (await app.result(new_thread)).status == "awaiting_approval"
    rejected = await app.resume(new_thread, approve=False)
    assert rejected.status == "refused"
    what_if, answer = await fork(app, thread, from_step=before[10]["step"],
                                 message="What is your return policy?")
    assert answer is not None and answer.status == "completed"
    assert "Refund policy v2" in answer.answer
    after = await app.history(thread)
    assert [s["checkpoint_id"] for s in after] == [s["checkpoint_id"] for s in before]
    assert (await app.result(thread)).status == "completed"
    assert app.toolbox.payments_sim is not None
    assert len(app.toolbox.payments_sim.all_refunds()) == 1  # the fork's rejection paid nothing


async def test_a_fork_that_pays_again_gets_the_original_payment(settings: Settings) -> None:
    # $10 of the $189 paid on order 1001 needs a human at a $5 limit; after the original is
    # paid, a fork from the waiting step approved again passes the re-check (plenty is left)
    # and sends the same payment: the idempotency key names the request, not the thread.
    settings = with_changes(settings, auto_approve_cents=500)
    async with open_interlock(settings, toolbox=build_toolbox(settings)) as app:
        waiting = await app.run("Refund $10 on order 1001")
        steps = await app.history(waiting.thread_id)
        waiting_step = next(s["step"] for s in steps if s["interrupts"])
        done = await app.resume(waiting.thread_id, approve=True)
        new_thread, _ = await fork(app, waiting.thread_id, from_step=waiting_step)
        again = await app.resume(new_thread, approve=True)
        assert (done.status, again.status) == ("completed", "completed"), again.answer
        [paid] = [f["value"] for f in done.facts.values() if f["kind"] == "refund"]
        [forked] = [f["value"] for f in again.facts.values() if f["kind"] == "refund"]
        assert forked["status"] == "executed"
        assert forked["idempotency_key"] == paid["idempotency_key"]
        assert forked["refund_id"] == paid["refund_id"]
        assert app.toolbox.payments_sim is not None
        assert len(app.toolbox.payments_sim.all_refunds()) == 1


def test_the_lineage_commands_read_the_same_on_either_saver(
        settings: Settings, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("INTERLOCK_HOME", str(settings.home))
    if settings.database_url:
        monkeypatch.setenv("INTERLOCK_DATABASE_URL", settings.database_url)

    def cli(*args: str) -> object:
        capsys.readouterr()
        assert main([*args, "--json"]) == 0, args
        return json.loads(capsys.readouterr().out)

    ran = cli("run", "Where is my order 1042?")
    assert isinstance(ran, dict) and ran["status"] == "completed"
    thread = str(ran["thread_id"])
    steps = cli("history", thread)
    assert isinstance(steps, list) and len(steps) > 5
    last = steps[-1]["step"]
    known = cli("asof", thread, "--step", str(last))
    assert isinstance(known, dict) and "shipment:1042" in known["facts"]
    changed = cli("diff", thread, "0", str(last))
    assert isinstance(changed, dict) and changed
    told = cli("explain", thread, "shipment:1042")
    assert isinstance(told, dict)
    assert told["versions"][0]["fact"]["source"] == "carrier"
    replayed = cli("replay", thread)
    assert isinstance(replayed, dict) and replayed["reproduced"] is True
    assert replayed["dependencies_called"] == 0
    forked = cli("fork", thread, "--from", "1", "--message", "What is your return policy?")
    assert isinstance(forked, dict) and forked["thread_id"] != thread
    timeline = cli("trace", thread)
    assert isinstance(timeline, dict) and timeline["segments"]


def test_retention_through_the_cli_leaves_the_latest_state_whole(
        settings: Settings, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("INTERLOCK_HOME", str(settings.home))
    if settings.database_url:
        monkeypatch.setenv("INTERLOCK_DATABASE_URL", settings.database_url)

    def cli(*args: str) -> dict[str, object]:
        capsys.readouterr()
        assert main([*args, "--json"]) == 0, args
        out = json.loads(capsys.readouterr().out)
        assert isinstance(out, dict)
        return out

    thread = str(cli("run", "Where is my order 1042?")["thread_id"])
    cli("run", "What is your return policy?", "--thread", thread)
    before = cli("storage")["before"]
    steps = cli_history(thread, capsys)
    pruned = cli("prune", "--keep-last", "2", "--vacuum")
    assert pruned["before"] == before
    report = pruned["pruned"]
    assert isinstance(report, dict) and report["threads"] == 1
    # Every checkpoint a kept one replays its messages from stays: the answers still read.
    after = cli_history(thread, capsys)
    assert after[-1]["step"] == steps[-1]["step"]
    known = cli("asof", thread, "--step", str(after[-1]["step"]))
    assert {"order:1042", "shipment:1042"} <= set(known["facts"])  # type: ignore[arg-type]
    cli("run", "Thanks!", "--thread", thread)  # the thread goes on


def cli_history(thread: str, capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["history", thread, "--json"]) == 0
    steps = json.loads(capsys.readouterr().out)
    assert isinstance(steps, list)
    return steps
