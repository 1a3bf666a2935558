"""`interlock assess` probes: graphs run against injected faults, every call counted."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_openai import ChatOpenAI
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.types import RetryPolicy

from graphs.assess import assess, intercepted
from graphs.assess.probes import amplification_finding, quick_retries
from graphs.cli import main

ASK = {"messages": [{"role": "user", "content": "hi"}]}


def model_graph(*, sdk_retries: int | None, node_attempts: int | None) -> Any:
    extra = {} if sdk_retries is None else {"max_retries": sdk_retries}
    llm = ChatOpenAI(model="gpt-test", api_key="sk-test",  # type: ignore[arg-type]
                     base_url="http://model.example/v1", **extra)

    async def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await llm.ainvoke(state["messages"])]}

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(MessagesState)
    policy = RetryPolicy(max_attempts=node_attempts) if node_attempts else None
    builder.add_node("agent", agent, retry_policy=policy)
    builder.add_edge(START, "agent")
    return quick_retries(builder.compile())  # as `assess` probes it: backoffs not waited for


@pytest.mark.parametrize(("sdk", "node", "calls", "status"), [
    (None, 3, 9.0, "fail"),   # ChatOpenAI's default 2 SDK retries x a node RetryPolicy of 3
    (None, None, 3.0, "warn"),  # the SDK's own retries alone
    (0, 3, 3.0, "warn"),      # the node's alone
    (0, None, 1.0, "pass"),   # one layer, no retries
])
async def test_amplification_is_measured_layer_by_layer(
        sdk: int | None, node: int | None, calls: float, status: str) -> None:
    graph = model_graph(sdk_retries=sdk, node_attempts=node)
    found = await amplification_finding(graph, [ASK] * 4)
    assert (found.figure, found.status) == (calls, status), found.evidence
    assert "model.example" in found.evidence
    first = node or 1
    assert f"{first:.1f} first attempts per logical call" in found.evidence
    assert f"x {calls / first:.1f} attempts each by the SDK" in found.evidence


async def test_a_graph_without_calls_is_not_applicable_and_nothing_leaves() -> None:
    async def raw(state: MessagesState) -> dict[str, Any]:
        with socket.socket() as raw_socket:  # not through httpx
            raw_socket.connect(("203.0.113.9", 80))
        return {}

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(MessagesState)
    builder.add_node("raw", raw)
    builder.add_edge(START, "raw")
    found = await amplification_finding(builder.compile(), [ASK] * 2)
    assert found.status == "n/a"
    assert "4 connections outside httpx and requests were stopped" in found.evidence  # 2 x 2 faults


async def test_the_interceptor_restores_everything() -> None:
    real = httpx.AsyncHTTPTransport.handle_async_request
    with intercepted(lambda call: (200, {"ok": True}, {})) as box:
        async with httpx.AsyncClient() as client:
            assert (await client.get("http://tools.example/x")).json() == {"ok": True}
    assert httpx.AsyncHTTPTransport.handle_async_request is real
    assert [c.host for c in box.calls] == ["tools.example"]


AGENT = '''
from typing import Any
from langchain_openai import ChatOpenAI
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.types import RetryPolicy

llm = ChatOpenAI(model="gpt-test", api_key="sk-test", base_url="http://model.example/v1")

async def agent(state: MessagesState) -> dict[str, Any]:
    return {"messages": [await llm.ainvoke(state["messages"])]}

builder = StateGraph(MessagesState)
builder.add_node("agent", agent, retry_policy=RetryPolicy(max_attempts=2))
builder.add_edge(START, "agent")
graph = builder.compile()
'''


async def test_a_scorecard_of_a_graph_written_elsewhere(tmp_path: Path) -> None:
    (tmp_path / "agent.py").write_text(AGENT)
    card = await assess(f"{tmp_path / 'agent.py'}:graph", hang_cap_s=0.5)
    [report] = card.graphs
    found = {f.id: f for f in report.findings}
    assert found["resilience.amplification"].figure == 6.0  # 2 node attempts x 3 by the SDK
    assert found["resilience.amplification"].status == "fail"
    assert found["resilience.node_retries"].status == "warn"
    assert found["resilience.deadlines"].status == "fail"  # ChatOpenAI waits 600 s by default
    assert card.to_json()["checks_run"] == ["static", "probes"]


def test_the_cli_takes_an_input_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A client timeout keeps the hang probe short (and makes it pass).
    (tmp_path / "agent.py").write_text(AGENT.replace('v1")', 'v1", timeout=0.2)'))
    (tmp_path / "input.json").write_text(json.dumps(ASK))
    assert main(["assess", f"{tmp_path / 'agent.py'}:graph", "--input",
                 str(tmp_path / "input.json"), "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    [amplification] = [f for f in card["graphs"][0]["areas"]["resilience"]
                       if f["id"] == "resilience.amplification"]
    assert amplification["figure"] == 6.0
    [deadlines] = [f for f in card["graphs"][0]["areas"]["resilience"]
                   if f["id"] == "resilience.deadlines"]
    assert deadlines["status"] == "pass", deadlines
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["assess", f"{tmp_path / 'agent.py'}:graph", "--input",
                 str(tmp_path / "bad.json")]) == 2


def governed_graph() -> Any:
    """A tool call behind a pybreaker breaker that opens after 3 failures."""
    import pybreaker

    breaker = pybreaker.CircuitBreaker(fail_max=3, reset_timeout=60)

    async def tool(state: MessagesState) -> dict[str, Any]:
        if breaker.current_state == "open":
            return {}  # fail fast: the dependency is not called
        try:
            async with httpx.AsyncClient() as client:
                (await client.get("http://tools.example/x")).raise_for_status()
        except httpx.HTTPError:
            try:
                breaker.call(lambda: (_ for _ in ()).throw(RuntimeError("down")))
            except (RuntimeError, pybreaker.CircuitBreakerError):
                pass
        return {}

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(MessagesState)
    builder.add_node("tool", tool)
    builder.add_edge(START, "tool")
    return builder.compile()


async def test_breaking_tells_a_breaker_from_none() -> None:
    from graphs.assess.probes import breaking_finding

    guarded = await breaking_finding(governed_graph(), [ASK] * 10)
    assert guarded.status == "pass" and guarded.figure == 3, guarded.evidence
    unguarded = await breaking_finding(model_graph(sdk_retries=0, node_attempts=None),
                                       [ASK] * 10)
    assert unguarded.status == "fail" and "5 of the last 5 requests" in unguarded.evidence
    assert "circuit breaker" in unguarded.fix


async def test_the_probes_never_write_into_the_graphs_own_checkpoints(tmp_path: Path) -> None:
    source = tmp_path / "saved.py"
    source.write_text(AGENT + "\nfrom langgraph.checkpoint.memory import InMemorySaver\n"
                      "SAVER = InMemorySaver()\nsaved = builder.compile(checkpointer=SAVER)\n")
    card = await assess(f"{source}:saved", hang_cap_s=0.5)
    [report] = card.graphs
    assert "InMemorySaver" in {f.id: f for f in report.findings}["state.checkpointer"].evidence
    [module] = [m for m in list(sys.modules.values())
                if getattr(m, "__file__", None) == str(source)]
    assert list(module.SAVER.list(None)) == []  # the probes ran on a copy


def tool_graph(*, client_timeout: float | None, node_timeout: float | None) -> Any:
    async def tool(state: MessagesState) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=client_timeout) as client:
            await client.get("http://tools.example/slow")
        return {}

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(MessagesState)
    builder.add_node("tool", tool, **({"timeout": node_timeout} if node_timeout else {}))
    builder.add_edge(START, "tool")
    return builder.compile()


async def test_a_hanging_dependency_is_cut_off_or_named() -> None:
    from graphs.assess.probes import hang_finding

    unbounded = await hang_finding(model_graph(sdk_retries=0, node_attempts=None), [ASK],
                                   cap_s=1.0)
    assert unbounded.status == "fail" and "not back after 1 s" in unbounded.evidence
    assert "timeout" in unbounded.fix
    by_client = await hang_finding(tool_graph(client_timeout=0.2, node_timeout=None), [ASK],
                                   cap_s=1.0)
    assert by_client.status == "pass" and 0.15 < float(by_client.figure or 0) < 0.9
    no_client = await hang_finding(tool_graph(client_timeout=None, node_timeout=None), [ASK],
                                   cap_s=1.0)
    assert no_client.status == "fail"  # httpx with timeout=None waits for ever
    by_node = await hang_finding(tool_graph(client_timeout=None, node_timeout=0.3), [ASK],
                                 cap_s=1.0)
    assert by_node.status == "pass" and float(by_node.figure or 0) < 0.9, by_node.evidence


async def test_a_dependency_called_every_other_request_has_not_stopped() -> None:
    from graphs.assess.probes import breaking_finding

    calls = iter([0, 1] * 10)

    async def sometimes(state: MessagesState) -> dict[str, Any]:
        if next(calls):
            async with httpx.AsyncClient() as client:
                await client.get("http://tools.example/x")
        return {}

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(MessagesState)
    builder.add_node("tool", sometimes)
    builder.add_edge(START, "tool")
    found = await breaking_finding(builder.compile(), [ASK] * 19)  # ends on a request without
    assert found.status == "warn" and "of the last" in found.evidence, found.evidence
