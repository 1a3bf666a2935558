"""Governed adapters: a team's httpx transport, LangChain tool and chat model, governed."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from graphs.core.clock import FakeClock
from graphs.core.errors import ConfigError
from tests.conftest import fast_settings
from tools.adapters import (
    GovernedChatModel,
    GovernedRefusal,
    GovernedTransport,
    calling,
    governed_tool,
)
from tools.dependencies import Dependency
from tools.errors import DependencyError
from tools.governor import CallContext, Governor
from tools.policy import DependencyPolicy

WAREHOUSE = Dependency(name="warehouse", description="A team's stock API.",
                       policy=DependencyPolicy(timeout=1.0, attempts=3, fail_max=3,
                                               reset_timeout=30.0, backoff_base=0.01,
                                               backoff_cap=0.02, health_window=6))


def governor(tmp_path: Path) -> Governor:
    settings = fast_settings(tmp_path).with_dependencies(WAREHOUSE)
    return Governor(settings, clock=FakeClock(), rng=random.Random(0))


class Script:
    """An inner transport that answers a script of statuses (the last repeats), and counts."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        status = self.statuses[min(self.calls, len(self.statuses)) - 1]
        return httpx.Response(status, json={"sku": "A1", "stock": 3})


async def test_a_transport_retries_what_may_succeed_and_counts_it(tmp_path: Path) -> None:
    inner = Script(503, 503, 200)
    ctx = CallContext()
    async with httpx.AsyncClient(base_url="http://warehouse.test", transport=GovernedTransport(
            "warehouse", governor(tmp_path), httpx.MockTransport(inner))) as http:
        with calling(ctx):
            answer = await http.get("/v1/stock/A1")
    assert answer.status_code == 200 and inner.calls == 3
    assert [e["kind"] for e in ctx.events].count("retry") == 2
    assert {e["dependency"] for e in ctx.events} == {"warehouse"}


async def test_a_dead_dependency_opens_the_breaker_and_is_not_called_again(
        tmp_path: Path) -> None:
    inner = Script(503)
    gov = governor(tmp_path)
    async with httpx.AsyncClient(base_url="http://warehouse.test", transport=GovernedTransport(
            "warehouse", gov, httpx.MockTransport(inner))) as http:
        answers = []
        for _ in range(3):
            try:
                answers.append((await http.get("/v1/stock/A1")).status_code)
            except GovernedRefusal as refused:
                answers.append(refused.error.reason)
    # 3 failures open the breaker (the first call's three attempts), then nothing goes out.
    assert inner.calls == 3
    assert answers[0] == 503 and set(answers[1:]) == {"breaker_open"}
    assert gov.breaker("warehouse").state == "open"


def test_a_transport_that_retries_itself_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="retries"):
        GovernedTransport("warehouse", governor(tmp_path), httpx.AsyncHTTPTransport(retries=2))


def test_an_unregistered_dependency_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no dependency 'nowhere'"):
        governor(tmp_path).breaker("nowhere")


async def test_a_tool_is_governed_and_one_that_retries_is_refused(tmp_path: Path) -> None:
    calls = 0

    @tool
    async def stock(sku: str) -> int:
        """Units of `sku` in stock."""
        nonlocal calls
        calls += 1
        if calls < 2:
            raise DependencyError("HTTP 503", dependency="warehouse", retryable=True,
                                  status=503, reason="unavailable")
        return 3

    gov = governor(tmp_path)
    governed = governed_tool(stock, "warehouse", gov)
    ctx = CallContext()
    with calling(ctx):
        assert await governed.ainvoke({"sku": "A1"}) == 3
    assert calls == 2 and [e["kind"] for e in ctx.events].count("retry") == 1
    with pytest.raises(ConfigError, match="with_retry"):
        governed_tool(stock.with_retry(stop_after_attempt=3), "warehouse", gov)  # type: ignore[arg-type]


class Throttled(GenericFakeChatModel):
    """A model whose first calls answer 429, as an OpenAI-compatible server would."""

    failures: int = 2
    calls: int = 0

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: Any = None, **kwargs: Any) -> ChatResult:
        self.calls += 1
        if self.calls <= self.failures:
            response = httpx.Response(429, headers={"retry-after": "0"},
                                      request=httpx.Request("POST", "http://model.test"))
            raise openai.RateLimitError("Rate limit reached", response=response, body=None)
        return await super()._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)


async def test_a_chat_model_is_governed_and_one_that_retries_is_refused(tmp_path: Path) -> None:
    inner = Throttled(messages=iter([AIMessage(content="hello")]))
    model = GovernedChatModel(inner=inner, dependency="warehouse", governor=governor(tmp_path))
    ctx = CallContext()
    with calling(ctx):
        answer = await model.ainvoke("hi")
    assert answer.content == "hello" and inner.calls == 3
    assert [e["detail"].get("reason") for e in ctx.events if e["kind"] == "attempt"][:2] == [
        "throttled", "throttled"]
    with pytest.raises(ConfigError, match="max_retries=2"):
        GovernedChatModel(inner=ChatOpenAI(model="m", api_key="k", max_retries=2),  # type: ignore[arg-type]
                          dependency="warehouse", governor=governor(tmp_path))
    # Left at its default (max_retries=None), the OpenAI client underneath retries twice.
    with pytest.raises(ConfigError, match="SDK client retries"):
        GovernedChatModel(inner=ChatOpenAI(model="m", api_key="k"),  # type: ignore[arg-type]
                          dependency="warehouse", governor=governor(tmp_path))
    GovernedChatModel(inner=ChatOpenAI(model="m", api_key="k", max_retries=0),  # type: ignore[arg-type]
                      dependency="warehouse", governor=governor(tmp_path))


async def test_with_the_recorder_a_replay_serves_every_adapter_and_calls_nothing(
        tmp_path: Path) -> None:
    from tools.recording import RecordedResults, Recorder, ReplayRecorder

    def adapters(recorder: Recorder, transport: Script, counted: list[int]
                 ) -> tuple[httpx.AsyncClient, Any, GovernedChatModel]:
        gov = governor(tmp_path)

        @tool
        async def stock(sku: str) -> dict[str, Any]:
            """Units of `sku` in stock."""
            counted.append(1)
            return {"sku": sku, "units": 3}

        http = httpx.AsyncClient(base_url="http://warehouse.test", transport=GovernedTransport(
            "warehouse", gov, httpx.MockTransport(transport), recorder=recorder))
        model = GovernedChatModel(
            inner=GenericFakeChatModel(messages=iter([AIMessage(content="3 units left")])),
            dependency="warehouse", governor=gov, recorder=recorder)
        return http, governed_tool(stock, "warehouse", gov, recorder=recorder), model

    async def use(http: httpx.AsyncClient, stock: Any, model: GovernedChatModel,
                  ctx: CallContext) -> tuple[Any, ...]:
        with calling(ctx):
            answer = await http.post("/v1/stock", json={"sku": "A1"})
            gone = await http.get("/v1/stock/B2")
            return (answer.status_code, answer.json(), gone.status_code,
                    await stock.ainvoke({"sku": "A1"}),
                    (await model.ainvoke("how many?")).content)

    live_http, live_calls = Script(200, 404), []
    live = CallContext(step_id="t1.s1")
    http, stock, model = adapters(Recorder(), live_http, live_calls)
    async with http:
        first = await use(http, stock, model, live)
    assert first == (200, {"sku": "A1", "stock": 3}, 404, {"sku": "A1", "units": 3},
                     "3 units left")
    assert live_http.calls == 2 and live_calls == [1]

    replayed_http, replayed_calls = Script(500), []
    served = ReplayRecorder(RecordedResults(live.events))
    http, stock, model = adapters(served, replayed_http, replayed_calls)
    async with http:
        again = await use(http, stock, model, CallContext(step_id="t1.s1"))
    assert again == first
    assert replayed_http.calls == 0 and replayed_calls == [] and served.results.served == 4


async def test_in_a_replay_an_adapter_without_the_recorder_is_refused_and_counted(
        tmp_path: Path) -> None:
    from tools.recording import RecordedResults
    from tools.replay import replay_toolbox

    settings = fast_settings(tmp_path).with_dependencies(WAREHOUSE)
    toolbox, refused = replay_toolbox(settings, RecordedResults([]), FakeClock())
    inner = Script(200)
    async with httpx.AsyncClient(base_url="http://warehouse.test", transport=GovernedTransport(
            "warehouse", toolbox.governor, httpx.MockTransport(inner))) as http:
        with pytest.raises(GovernedRefusal) as raised:
            await http.get("/v1/stock/A1")
    assert raised.value.error.reason == "not_recorded"
    assert inner.calls == 0 and refused.calls == 1
