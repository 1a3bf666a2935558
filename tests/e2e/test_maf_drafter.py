"""The Microsoft Agent Framework drafter, in process, over real HTTP to a local OpenAI stub.

Every model call the agent makes is one governed call of the `model` dependency (step
`t1.draft`): the stub sees exactly the governor's attempts, never the SDK's own retries. The
planner asks the same stub (structured output); its requests are told apart by their
`response_format` and answered with a plan.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest

from agents.maf_drafting import MAF_DRAFTER
from graphs.runner import Interlock, RunResult, open_interlock
from graphs.settings import Settings
from tests.fakes import OpenAIStub, openai_stub
from tools.toolbox import build_toolbox

ASK = "What is the status of order 1034? Mail me: jane@example.com"
PLAN = {"intents": ["order_status"], "steps": [
    {"id": "s1", "worker": "orders", "order_id": 1034, "amount_cents": None, "depends_on": []}]}
GOOD = "Thanks for asking! Your order 1034 ($378.00) has been delivered."
THROTTLED = (429, {"error": {"message": "slow down", "type": "rate_limit"}}, {})

Answer = tuple[int, dict[str, Any], dict[str, str]]


def _planning(body: dict[str, Any]) -> bool:
    return "response_format" in body or "tools" in body


def _desk(drafts: Callable[[dict[str, Any]], Answer]) -> Callable[[dict[str, Any]], Answer]:
    """The stub's answers: a plan to the planner, `drafts(body)` to the drafter."""
    def respond(body: dict[str, Any]) -> Answer:
        return OpenAIStub.completion(json.dumps(PLAN)) if _planning(body) else drafts(body)
    return respond


def _drafted(stub: OpenAIStub) -> list[dict[str, Any]]:
    return [r for r in stub.requests if not _planning(r["body"])]


async def _app(settings: Settings, url: str, *, model: str = "openai:stub-model",
               attempts: int | None = None) -> AsyncIterator[Interlock]:
    if attempts is not None:
        settings = settings.with_policy("model", attempts=attempts, backoff_base=0.01)
    settings = replace(settings, drafters=(MAF_DRAFTER,), model=model, openai_base_url=url,
                       openai_api_key="k")
    async with open_interlock(toolbox=build_toolbox(settings)) as app:
        yield app


def _output(result: RunResult) -> list[dict[str, Any]]:
    return [dict(v) for v in result.verdicts if v["guard"] == "output"]


def _draft_events(result: RunResult, kind: str = "attempt") -> list[dict[str, Any]]:
    return [dict(e) for e in result.events if e["kind"] == kind
            and e["dependency"] == "model" and e["step_id"] == "t1.draft"]


async def test_a_good_wording_stands_and_each_model_call_is_one_governed_call(
        settings: Settings) -> None:
    with openai_stub([], respond=_desk(lambda body: OpenAIStub.completion(GOOD))) as stub:
        async for app in _app(settings, stub.url):
            result = await app.run(ASK)
    assert result.answer.startswith(GOOD), result.answer
    [final] = _output(result)
    assert "worded_by: maf_drafting" in final["reasons"], final
    [sent] = _drafted(stub)  # one writer, one call
    assert len(_draft_events(result)) == 1 and _draft_events(result, "retry") == []
    assert sent["path"].endswith("/chat/completions")
    body = sent["body"]
    assert body["model"] == "stub-model" and "response_format" not in body
    headers = {k.lower(): v for k, v in sent["headers"].items()}
    assert headers["authorization"] == "Bearer k"
    # Our own OpenAI client: the framework stamps nothing on it.
    assert "agent-framework" not in headers.get("user-agent", "")
    assert "agent-framework-version" not in headers
    said = json.dumps(body["messages"])
    # The statements to word, the customer's words as quoted data, their personal data out.
    assert "1034" in said and "$378.00" in said
    assert json.dumps("What is the status of order 1034?")[1:-1] in said
    assert "jane@example.com" not in said and "untrusted data" in said
    assert body["messages"][0]["role"] == "system"


async def test_a_wording_with_an_unbacked_promise_is_refused_and_the_template_answers(
        settings: Settings) -> None:
    promise = "Your order 1034 ($378.00) has been delivered. We will also send you a $50 voucher."
    with openai_stub([], respond=_desk(lambda body: OpenAIStub.completion(promise))) as stub:
        async for app in _app(settings, stub.url):
            result = await app.run("What is the status of order 1034?")
    assert len(_drafted(stub)) == 1
    assert promise not in result.answer and "voucher" not in result.answer
    assert "1034" in result.answer and "$378.00" in result.answer
    [refused, final] = _output(result)
    assert refused["action"] == "refuse" and not refused["passed"]
    assert any(r.endswith("unbacked_amount: 5000") for r in refused["reasons"]), refused["reasons"]
    assert refused["reasons"][0].startswith("wording_refused: maf_drafting's wording")
    assert final["passed"] and not any(r.startswith("worded_by") for r in final["reasons"])


async def test_a_throttling_model_sees_the_governors_attempts_and_no_sdk_retries(
        settings: Settings) -> None:
    with openai_stub([], respond=_desk(lambda body: THROTTLED)) as stub:
        async for app in _app(settings, stub.url, attempts=2):
            result = await app.run("What is the status of order 1034?")
    attempts = settings.with_policy("model", attempts=2).policy("model").attempts
    # Two governed attempts, not 2 x (1 + the SDK's default of 2 retries).
    assert len(_drafted(stub)) == attempts == 2
    assert [e["detail"]["attempt"] for e in _draft_events(result)] == [1, 2]
    assert len(_draft_events(result, "retry")) == 1
    assert result.status == "completed" and "1034" in result.answer
    [final] = _output(result)
    assert "template_used: maf_drafting unavailable (throttled)" in final["reasons"], final
    assert not any(r.startswith("worded_by") for r in final["reasons"])


async def test_a_model_that_refuses_leaves_the_template(settings: Settings) -> None:
    status, refusal, headers = OpenAIStub.completion("")
    refusal["choices"][0]["message"].update(content=None, refusal="I can't help with that.")
    with openai_stub([], respond=_desk(lambda body: (status, refusal, headers))) as stub:
        async for app in _app(settings, stub.url):
            result = await app.run("What is the status of order 1034?")
    assert len(_drafted(stub)) == 1
    assert "help with that" not in result.answer and "$378.00" in result.answer
    [final] = _output(result)
    assert "template_used: maf_drafting gave no wording (the model refused)" in final["reasons"]


async def test_without_a_model_nothing_is_called_and_the_template_answers(
        settings: Settings) -> None:
    with openai_stub([], respond=_desk(lambda body: OpenAIStub.completion(GOOD))) as stub:
        async for app in _app(settings, stub.url, model="rules"):
            result = await app.run("What is the status of order 1034?")
    assert stub.requests == []
    assert [e for e in result.events if e["dependency"] == "model"] == []
    assert result.status == "completed" and "1034" in result.answer
    assert GOOD not in result.answer
    [final] = _output(result)
    assert "template_used: maf_drafting has no model (INTERLOCK_MODEL=rules)" in final["reasons"]


async def test_the_frameworks_own_telemetry_is_not_in_the_path(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Instrumentation left on (the framework's default): still no tracer or meter is asked."""
    from agent_framework import observability

    asked: list[str] = []
    real_tracer, real_meter = observability.get_tracer, observability.get_meter

    def tracer(*args: Any, **kwargs: Any) -> Any:
        asked.append("tracer")
        return real_tracer(*args, **kwargs)

    def meter(*args: Any, **kwargs: Any) -> Any:
        asked.append("meter")
        return real_meter(*args, **kwargs)

    monkeypatch.setattr(observability, "get_tracer", tracer)
    monkeypatch.setattr(observability, "get_meter", meter)
    monkeypatch.setattr(observability.OBSERVABILITY_SETTINGS, "_enable_instrumentation", True)
    monkeypatch.setattr(observability.OBSERVABILITY_SETTINGS, "_user_disabled", False)
    assert observability.OBSERVABILITY_SETTINGS.ENABLED
    with openai_stub([], respond=_desk(lambda body: OpenAIStub.completion(GOOD))) as stub:
        async for app in _app(settings, stub.url):
            result = await app.run("What is the status of order 1034?")
    assert len(_drafted(stub)) == 1
    assert "worded_by: maf_drafting" in _output(result)[0]["reasons"]
    assert asked == []
