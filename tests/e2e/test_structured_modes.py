"""The planner against the OpenAI-compatible servers people run, over real HTTP.

Each stub behaves like a kind of server: OpenAI (every mode), llama.cpp (JSON mode only; a
`json_schema` answered with a 400, or a 500), a server that only calls tools, one that only
does JSON mode. The client finds a mode the server takes, remembers it, and never takes "this
server does not support that mode" for an outage: no retry, no breaker, no fallback to rules.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from graphs.runner import open_interlock
from graphs.settings import Settings
from tests.fakes import OpenAIStub, openai_stub
from tools.structured import LEARNED, StructuredModes, mode_refused
from tools.toolbox import build_toolbox

PLAN = {"intents": ["order_status", "tracking"], "steps": [
    {"id": "s1", "worker": "orders", "order_id": 1042, "amount_cents": None, "depends_on": []},
    {"id": "s2", "worker": "shipping", "order_id": 1042, "amount_cents": None,
     "depends_on": []}]}
Answer = tuple[int, dict[str, Any], dict[str, str]]


def _error(status: int, message: str, kind: str = "invalid_request_error") -> Answer:
    return (status, {"error": {"code": status, "message": message, "type": kind}}, {})


def _answer(body: dict[str, Any]) -> Answer:
    if body.get("tools"):
        name = body["tools"][0]["function"]["name"]
        done = OpenAIStub.completion("")
        message = done[1]["choices"][0]["message"]
        message["content"] = None
        message["tool_calls"] = [{"id": "call_1", "type": "function", "function": {
            "name": name, "arguments": json.dumps(PLAN)}}]
        done[1]["choices"][0]["finish_reason"] = "tool_calls"
        return done
    return OpenAIStub.completion(json.dumps(PLAN))


LLAMA_NO_TOOLS = _error(500, "tools param requires --jinja flag", "server_error")


def server(*, json_schema: bool | int, tools: bool, json_object: bool,
           no_tools: Answer = LLAMA_NO_TOOLS) -> Callable[[dict[str, Any]], Answer]:
    """A server taking the modes given; `json_schema` an HTTP status: refused with it."""

    def respond(body: dict[str, Any]) -> Answer:
        kind = (body.get("response_format") or {}).get("type")
        if kind == "json_schema" and json_schema is not True:
            status = json_schema if isinstance(json_schema, int) and json_schema > 1 else 400
            return _error(status, "Unsupported response_format type: json_schema; only "
                                  "'text' and 'json_object' are supported",
                          "server_error" if status >= 500 else "invalid_request_error")
        if kind == "json_object" and not json_object:
            return _error(400, "response_format is not supported by this server")
        if body.get("tools") and not tools:
            return no_tools
        return _answer(body)

    return respond


KINDS = {
    "openai": (server(json_schema=True, tools=True, json_object=True), "json_schema"),
    "llama.cpp (400)": (server(json_schema=400, tools=False, json_object=True), "json_object"),
    "llama.cpp (500)": (server(json_schema=500, tools=False, json_object=True), "json_object"),
    "tools only": (server(json_schema=400, tools=True, json_object=False), "tools"),
    "json mode only": (server(json_schema=422, tools=False, json_object=True, no_tools=_error(
        400, "Tool calling is not supported for this model")), "json_object"),
}


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    LEARNED.forget()
    yield
    LEARNED.forget()


def model_settings(settings: Settings, url: str) -> Settings:
    return replace(settings.with_policy("model", attempts=2, timeout=5.0),
                   model="openai:stub-model", openai_base_url=url, openai_api_key="test-key")


def asked(request: dict[str, Any]) -> str:
    body = request["body"]
    return "tools" if body.get("tools") else (body.get("response_format") or {}).get(
        "type", "text")


@pytest.mark.parametrize("kind", list(KINDS))
async def test_the_planner_finds_the_mode_a_server_takes_and_remembers_it(
        settings: Settings, kind: str) -> None:
    respond, works = KINDS[kind]
    with openai_stub([], respond=respond) as stub:
        settings = model_settings(settings, stub.url)
        for turn in (1, 2):
            async with open_interlock(toolbox=build_toolbox(settings)) as app:
                result = await app.run("Where is my order 1042?")
            assert result.plan is not None and result.plan["source"] == "model", (kind, turn)
            assert result.status == "completed" and "in transit" in result.answer
            assert result.degraded == []
            assert not [e for e in result.events if e["kind"] in ("retry", "rejected")
                        or str(e["kind"]).startswith("breaker")], result.events
            if turn == 1:
                first = [asked(r) for r in stub.requests]
                assert first[-1] == works and len(set(first)) == len(first), first
        second = [asked(r) for r in stub.requests[len(first):]]
    assert second == [works]  # remembered: straight to the mode that works
    if works == "json_object":  # JSON mode carries the schema in the prompt
        said = json.dumps(stub.requests[-1]["body"]["messages"])
        assert "JSON schema" in said and "depends_on" in said


async def test_a_server_that_takes_no_mode_falls_back_to_rules_once(
        settings: Settings) -> None:
    respond = server(json_schema=400, tools=False, json_object=False)
    with openai_stub([], respond=respond) as stub:
        settings = model_settings(settings, stub.url)
        for _ in range(2):
            async with open_interlock(toolbox=build_toolbox(settings)) as app:
                result = await app.run("Where is my order 1042?")
            assert result.plan is not None and result.plan["source"] == "rules"
            assert result.status == "completed" and "in transit" in result.answer
    assert sorted(asked(r) for r in stub.requests) == ["json_object", "json_schema", "tools"]


async def test_an_outage_is_still_an_outage(settings: Settings) -> None:
    down = _error(500, "upstream connect error", "server_error")
    with openai_stub([down, down, OpenAIStub.completion(json.dumps(PLAN))]) as stub:
        async with open_interlock(toolbox=build_toolbox(
                model_settings(settings, stub.url))) as app:
            result = await app.run("Where is my order 1042?")
    # Two attempts, both the same json_schema request: retried as an outage, no mode given up.
    assert [asked(r) for r in stub.requests] == ["json_schema", "json_schema"]
    assert result.plan is not None and result.plan["source"] == "rules"
    assert LEARNED.order(f"{stub.url}#stub-model")[0] == "json_schema"


@pytest.mark.parametrize(("status", "message", "refused"), [
    (400, "Unsupported response_format type: json_schema", True),
    (500, "'response_format' of type 'json_schema' is not supported", True),
    (500, "tools param requires --jinja flag", True),
    (422, "Extra inputs are not permitted: tools", True),
    (400, "Invalid value for 'response_format': json_schema", True),
    (400, "This model's maximum context length is 8192 tokens. However, your messages "
          "resulted in 9000 tokens (8000 in the messages, 1000 in the functions).", False),
    (500, "failed to parse tool call: invalid JSON", False),
    (503, "tools unavailable: upstream is restarting", False),
    (502, "json_schema backend not available", False),
    (500, "The server is overloaded", False),
    (429, "Rate limit reached for json_schema requests: only 3 per minute", False),
])
def test_what_counts_as_a_mode_refused(status: int, message: str, refused: bool) -> None:
    assert mode_refused(status, message) is refused


def test_a_refusal_is_asked_again_after_a_while() -> None:
    now = [0.0]
    modes = StructuredModes(forget_after_s=60.0, clock=lambda: now[0])
    modes.refuse("s", "json_schema")
    assert modes.order("s") == ["function_calling", "json_mode"]
    now[0] = 61.0
    assert modes.order("s")[0] == "json_schema"
