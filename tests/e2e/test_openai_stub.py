"""ChatOpenAI over real HTTP against a local OpenAI-compatible stub: structured output."""

from __future__ import annotations

import json
from dataclasses import replace

from graphs.runner import open_interlock
from graphs.settings import Settings
from tests.fakes import OpenAIStub, openai_stub
from tools.model import build_chat_model
from tools.toolbox import build_toolbox

PLAN = {"intents": ["order_status", "tracking"], "steps": [
    {"id": "s1", "worker": "orders", "order_id": 1042, "amount_cents": None, "depends_on": []},
    {"id": "s2", "worker": "shipping", "order_id": 1042, "amount_cents": None,
     "depends_on": []}]}


def model_settings(settings: Settings, url: str, attempts: int) -> Settings:
    return replace(settings.with_policy("model", attempts=attempts, timeout=5.0),
                   model="openai:stub-model", openai_base_url=url, openai_api_key="test-key")


def test_the_client_is_built_with_max_retries_0(settings: Settings) -> None:
    model = build_chat_model(replace(settings, model="openai:gpt-test",
                                     openai_base_url="http://127.0.0.1:9/v1"))
    assert model is not None and getattr(model, "max_retries") == 0  # noqa: B009


async def test_structured_output_plan_over_http(settings: Settings) -> None:
    with openai_stub([OpenAIStub.completion(json.dumps(PLAN))]) as stub:
        toolbox = build_toolbox(model_settings(settings, stub.url, attempts=1))
        async with open_interlock(toolbox=toolbox) as app:
            result = await app.run("Where is my order 1042?")
    assert result.plan is not None and result.plan["source"] == "model"
    assert [s["worker"] for s in result.plan["steps"]] == ["orders", "shipping"]
    assert result.status == "completed" and "in transit" in result.answer
    [request] = stub.requests
    assert request["path"].endswith("/chat/completions")
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["authorization"] == "Bearer test-key"
    body = request["body"]
    assert body["model"] == "stub-model"
    assert body["response_format"]["type"] == "json_schema"
    schema = body["response_format"]["json_schema"]["schema"]
    assert "steps" in schema["properties"]
    assert "Where is my order 1042?" in json.dumps(body["messages"])


async def test_the_sdk_never_retries_on_its_own(settings: Settings) -> None:
    error = (500, {"error": {"message": "upstream down", "type": "server_error"}}, {})
    with openai_stub([error, error, error, error]) as stub:
        toolbox = build_toolbox(model_settings(settings, stub.url, attempts=1))
        async with open_interlock(toolbox=toolbox) as app:
            result = await app.run("Where is my order 1042?")
    # One attempt allowed by the governor -> exactly one HTTP request (the SDK's default
    # would have made three).
    assert len(stub.requests) == 1
    assert result.plan is not None and result.plan["source"] == "rules"
    assert result.degraded == ["model"] and result.status == "completed"


async def test_throttling_is_retried_by_the_governor_honouring_retry_after(
        settings: Settings) -> None:
    throttled = (429, {"error": {"message": "slow down", "type": "rate_limit"}},
                 {"Retry-After": "0.05"})
    with openai_stub([throttled, OpenAIStub.completion(json.dumps(PLAN))]) as stub:
        toolbox = build_toolbox(model_settings(settings, stub.url, attempts=2))
        async with open_interlock(toolbox=toolbox) as app:
            result = await app.run("Where is my order 1042?")
    assert len(stub.requests) == 2
    assert result.plan is not None and result.plan["source"] == "model"
    retries = [e for e in result.events if e["kind"] == "retry"]
    assert retries and retries[0]["detail"]["delay_s"] >= 0.05
    assert result.degraded == []


async def test_a_malformed_answer_falls_back_to_rules(settings: Settings) -> None:
    with openai_stub([OpenAIStub.completion('{"intents": "nope"}')]) as stub:
        toolbox = build_toolbox(model_settings(settings, stub.url, attempts=2))
        async with open_interlock(toolbox=toolbox) as app:
            result = await app.run("Where is my order 1042?")
    assert len(stub.requests) == 1  # malformed output is not retried
    assert result.plan is not None and result.plan["source"] == "rules"
    assert result.status == "completed"
