"""The governed model gateway over real HTTP: OpenAI clients with their defaults, governed.

An upstream stub plays the model's server; the gateway is served by uvicorn; the clients are the
OpenAI SDK and ChatOpenAI with their default retries left on, as a foreign agent would have them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import httpx
import openai
import pytest

from graphs.core.actors import STAFF, Actor
from graphs.gateway import REFUSED_STATUS, Gateway
from graphs.keys import add_key
from graphs.settings import Settings
from tests.e2e.devserver import free_port
from tests.fakes import OpenAIStub, openai_stub

Answer = tuple[int, dict[str, Any], dict[str, str]]
THROTTLED: Answer = (429, {"error": {"message": "Rate limit reached", "type": "rate_limit"}},
                     {"Retry-After": "0.01"})


class Served:
    def __init__(self, url: str, staff: str, customer: str, gateway: Gateway) -> None:
        self.url, self.staff, self.customer, self.gateway = url, staff, customer, gateway


async def serve(settings: Settings) -> AsyncIterator[Served]:
    import uvicorn

    _, staff = add_key(settings.api_keys_path, STAFF, label="agents")
    _, customer = add_key(settings.api_keys_path, Actor(kind="customer", customer_id=7),
                          label="c7")
    gateway = Gateway(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(gateway, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    try:
        yield Served(f"http://127.0.0.1:{port}/v1", staff, customer, gateway)
    finally:
        server.should_exit = True
        await task
        await gateway.aclose()


def model_settings(settings: Settings, upstream: str, **policy: Any) -> Settings:
    return replace(settings.with_policy("model", **{"attempts": 3, "timeout": 2.0,
                                                    "backoff_base": 0.01, **policy}),
                   model="openai:upstream-model", openai_base_url=upstream,
                   openai_api_key="upstream-key")


def client(served: Served, **headers: str) -> tuple[openai.AsyncOpenAI, list[httpx.Request]]:
    """The OpenAI SDK with its defaults (2 retries), counting what it sends."""
    sent: list[httpx.Request] = []

    async def count(request: httpx.Request) -> None:
        sent.append(request)

    http = httpx.AsyncClient(event_hooks={"request": [count]})
    return openai.AsyncOpenAI(base_url=served.url, api_key=served.staff, http_client=http,
                              default_headers=headers), sent


async def test_a_completion_goes_through_governed_and_attributed(settings: Settings) -> None:
    with openai_stub([OpenAIStub.completion("hello")]) as upstream:
        async for served in serve(model_settings(settings, upstream.url)):
            sdk, sent = client(served, **{"x-interlock-thread": "t-1", "x-interlock-step": "s2",
                                          "x-interlock-deadline-ms": "5000"})
            raw = await sdk.chat.completions.with_raw_response.create(
                model="anything", messages=[{"role": "user", "content": "hi"}])
            done = raw.parse()
            models = await sdk.models.list()
    assert done.choices[0].message.content == "hello" and len(sent) == 2  # + models
    [asked] = upstream.requests
    assert asked["body"]["model"] == "upstream-model"  # the gateway decides the model
    headers = {k.lower(): v for k, v in asked["headers"].items()}
    assert headers["authorization"] == "Bearer upstream-key"  # not the caller's key
    events = json.loads(raw.http_response.text)["interlock"]["events"]
    assert [(e["kind"], e["thread_id"], e["step_id"]) for e in events] == [
        ("attempt", "t-1", "s2")]
    assert [m.id for m in models.data] == ["upstream-model"]


async def test_a_throttled_model_costs_the_governors_attempts_not_the_clients(
        settings: Settings) -> None:
    with openai_stub([], respond=lambda body: THROTTLED) as upstream:
        async for served in serve(model_settings(settings, upstream.url, fail_max=100)):
            sdk, sent = client(served)
            with pytest.raises(openai.APIStatusError) as refused:
                await sdk.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}])
    # One request from a client that retries twice by default; three attempts upstream (the
    # governor's), where the client's retries x the governor's would have made nine.
    assert len(sent) == 1 and len(upstream.requests) == 3
    error = refused.value
    assert error.status_code == REFUSED_STATUS
    assert error.response.headers["x-should-retry"] == "false"
    text = error.response.text.lower()
    assert "rate limit" not in text and "too many requests" not in text
    assert json.loads(error.response.text)["error"]["type"] == "dependency_refused"


async def test_an_open_breaker_refuses_without_calling_the_model(settings: Settings) -> None:
    down: Answer = (503, {"error": {"message": "overloaded", "type": "server_error"}}, {})
    with openai_stub([], respond=lambda body: down) as upstream:
        async for served in serve(model_settings(settings, upstream.url, attempts=1,
                                                 fail_max=2, health_window=2)):
            sdk, sent = client(served)
            codes = []
            for _ in range(6):
                with pytest.raises(openai.APIStatusError) as refused:
                    await sdk.chat.completions.create(
                        model="m", messages=[{"role": "user", "content": "hi"}])
                codes.append(json.loads(refused.value.response.text)["error"]["code"])
    assert len(sent) == 6 and len(upstream.requests) == 2, codes
    assert codes[-1] == "breaker_open"


async def test_the_callers_deadline_bounds_the_call(settings: Settings) -> None:
    def slow(body: dict[str, Any]) -> Answer:
        time.sleep(1.5)
        return OpenAIStub.completion("late")

    with openai_stub([], respond=slow) as upstream:
        async for served in serve(model_settings(settings, upstream.url)):
            sdk, _ = client(served, **{"x-interlock-deadline-ms": "300"})
            began = time.monotonic()
            with pytest.raises(openai.APIStatusError) as refused:
                await sdk.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}])
            took = time.monotonic() - began
    assert refused.value.status_code == REFUSED_STATUS and took < 1.2, took
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("status", [400, 500])  # llama.cpp refuses a mode with either
async def test_what_the_server_refuses_on_its_merits_is_passed_on_once(
        settings: Settings, status: int) -> None:
    mode: Answer = (status, {"error": {
        "message": "Unsupported response_format type: json_schema",
        "type": "invalid_request_error"}}, {})
    with openai_stub([], respond=lambda body: mode) as upstream:
        async for served in serve(model_settings(settings, upstream.url)):
            sdk, sent = client(served)
            with pytest.raises(openai.BadRequestError) as refused:
                await sdk.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}],
                    response_format={"type": "json_schema", "json_schema": {
                        "name": "x", "schema": {"type": "object"}}})
    assert len(sent) == 1 and len(upstream.requests) == 1
    assert "json_schema" in refused.value.message
    assert refused.value.response.headers["x-should-retry"] == "false"


async def test_the_models_server_refusing_the_gateways_key_is_not_the_callers_fault(
        settings: Settings) -> None:
    denied: Answer = (401, {"error": {"message": "Incorrect API key provided: up***ey",
                                      "type": "invalid_request_error"}}, {})
    with openai_stub([], respond=lambda body: denied) as upstream:
        async for served in serve(model_settings(settings, upstream.url)):
            sdk, sent = client(served)
            with pytest.raises(openai.APIStatusError) as refused:
                await sdk.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == REFUSED_STATUS and len(upstream.requests) == 1
    assert "up***ey" not in refused.value.response.text
    assert json.loads(refused.value.response.text)["error"]["code"] == "upstream_auth"


@pytest.mark.parametrize(("call", "status"), [
    (lambda http, s: http.post("/chat/completions", json={"messages": []}), 401),
    (lambda http, s: http.post("/chat/completions", json={"messages": []},
                               headers={"authorization": f"Bearer {s.customer}"}), 403),
    (lambda http, s: http.post("/chat/completions", content=b"{not json",
                               headers={"authorization": f"Bearer {s.staff}"}), 400),
    (lambda http, s: http.post("/chat/completions", json={"messages": [], "stream": True},
                               headers={"authorization": f"Bearer {s.staff}"}), 400),
    (lambda http, s: http.post("/chat/completions", json={"messages": []},
                               headers={"authorization": f"Bearer {s.staff}",
                                        "x-interlock-deadline-ms": "soon"}), 400),
    (lambda http, s: http.get("/embeddings",
                              headers={"authorization": f"Bearer {s.staff}"}), 404),
])
async def test_bad_requests_get_a_clear_error(
        settings: Settings, call: Callable[[httpx.AsyncClient, Served], Any],
        status: int) -> None:
    with openai_stub([OpenAIStub.completion("never")]) as upstream:
        async for served in serve(model_settings(settings, upstream.url)):
            async with httpx.AsyncClient(base_url=served.url) as http:
                answer = await call(http, served)
    assert answer.status_code == status and answer.json()["error"]["message"]
    assert upstream.requests == []


def test_the_gateway_needs_a_model(settings: Settings) -> None:
    from graphs.core.errors import ConfigError

    with pytest.raises(ConfigError):
        Gateway(settings)  # INTERLOCK_MODEL=rules


async def test_the_langgraph_server_serves_the_gateway_beside_the_graph(
        tmp_path: Any) -> None:
    from tests.e2e.devserver import dev_server

    with openai_stub([], respond=lambda body: OpenAIStub.completion("from the model")) as up, \
            dev_server(tmp_path, {"staff": STAFF,
                                  "customer": Actor(kind="customer", customer_id=7)},
                       {"INTERLOCK_MODEL": "openai:upstream-model",
                        "OPENAI_BASE_URL": up.url, "OPENAI_API_KEY": "upstream-key",
                        "INTERLOCK_LIMITS_STAFF": "requests_per_minute=6,requests_burst=4"}
                       ) as server:
        keys = server["keys"]
        async with httpx.AsyncClient(base_url=f"{server['url']}/v1") as http:
            nobody = await http.get("/models")
            customer = await http.get("/models", headers={"x-api-key": keys["customer"]})
            sdk = openai.AsyncOpenAI(base_url=f"{server['url']}/v1", api_key=keys["staff"],
                                     http_client=http)
            done = await sdk.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}])
            staff = {"x-api-key": keys["staff"]}
            over = [(await http.get("/models", headers=staff)) for _ in range(8)]
    assert nobody.status_code == 401 and customer.status_code == 403
    # Past the key's share: a refusal no client retries, never a 429.
    statuses = [a.status_code for a in over]
    assert REFUSED_STATUS in statuses and 429 not in statuses, statuses
    last = over[-1]
    assert last.headers["x-should-retry"] == "false"
    assert "rate limit" not in last.text.lower() and last.json()["error"]["code"] == (
        "caller_limit")
    assert done.choices[0].message.content == "from the model"
    assert [r["body"]["model"] for r in up.requests] == ["upstream-model"]
