"""`interlock assess` healthy-run probes: scripted model, writers, isolation, traces.

Each check runs on small graphs built to pass it and to fail it, so a check that can never
fail cannot hide.
"""

from __future__ import annotations

import asyncio
import operator
import re
import threading
from pathlib import Path
from typing import Annotated, Any

import httpx
import langsmith
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import create_react_agent
from langgraph.types import Send
from pydantic import BaseModel
from typing_extensions import TypedDict

from graphs.assess import assess
from graphs.assess.intercept import Call, intercepted
from graphs.assess.isolation import baseline, isolation_finding
from graphs.assess.runs import run_one
from graphs.assess.scorecard import Finding
from graphs.assess.scripted import healthy, sample
from graphs.assess.traces import (
    PERSONAL,
    Caught,
    calls_finding,
    catching,
    redaction_finding,
    traced_load,
    with_personal_data,
)
from graphs.assess.writers import writers_findings

ORDER = {"messages": [{"role": "user", "content": "Where is my order 1042?"}]}
POLICY = {"messages": [{"role": "user", "content": "What is your return policy?"}]}


def llm(**extra: Any) -> ChatOpenAI:
    return ChatOpenAI(model="gpt-test", api_key="sk-test",  # type: ignore[arg-type]
                      base_url="http://model.example/v1", max_retries=0, **extra)


@tool
async def track(order_id: str) -> str:
    """Track an order with the carrier."""
    async with httpx.AsyncClient(timeout=1.0) as client:
        return (await client.get(f"http://carrier.example/v1/shipments/{order_id}")).text


# -- the scripted model ----------------------------------------------------------------------

async def test_the_scripted_model_takes_an_agent_past_its_first_call_on_varied_routes() -> None:
    agent = create_react_agent(llm(), [track])
    runs = await baseline(agent, [ORDER] * 4, timeout_s=10)
    assert all(r.answered for r in runs), [r.error for r in runs]
    # Route 0 and 2 call the tool (then answer), 1 and 3 answer at once.
    assert [sorted(r.hosts()) for r in runs] == [["carrier.example", "model.example"],
                                                 ["model.example"]] * 2
    assert [len(r.calls) for r in runs] == [3, 1, 3, 1]


async def test_the_scripted_model_streams_and_answers_structured_output() -> None:
    class Verdict(BaseModel):
        plausible: bool
        reasons: list[str]
        score: int

    structured = llm().with_structured_output(Verdict, method="json_schema")
    streaming = llm(streaming=True)
    with intercepted(healthy):
        verdict = await structured.ainvoke("assess this")
        assert isinstance(verdict, Verdict) and verdict.score >= 1
        said = await streaming.ainvoke("hello")
    assert said.content == "Scripted reply from interlock assess."
    assert sample({"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}},
                   "required": ["a"], "$defs": {"A": {"enum": ["x", "y"]}}}) == {"a": "x"}


# -- writers per state key -------------------------------------------------------------------

class Fan(TypedDict, total=False):
    value: int
    items: Annotated[list[int], operator.add]
    left: int
    right: int


def fan_graph(*, both_write_value: bool) -> Any:
    async def left_too(state: Fan) -> dict[str, Any]:
        return {"items": [1], "left": 1, "value": 1}

    async def left_own(state: Fan) -> dict[str, Any]:
        return {"items": [1], "left": 1}

    left = left_too if both_write_value else left_own

    async def right(state: Fan) -> dict[str, Any]:
        return {"items": [2], "right": 2, "value": 2}

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(Fan)
    builder.add_node("left", left)
    builder.add_node("right", right)
    builder.add_edge(START, "left")
    builder.add_edge(START, "right")
    return builder.compile()


async def measured_reducers(graph: Any, given: Any = None) -> Finding:
    runs = await baseline(graph, [given or {"value": 0}] * 2, timeout_s=10)
    return writers_findings(graph, runs)["state.reducers"]


async def test_parallel_writers_of_one_last_value_key_fail_and_reducers_pass() -> None:
    clash = await measured_reducers(fan_graph(both_write_value=True))
    assert clash.status == "fail" and "InvalidUpdateError" in clash.evidence
    assert "reducer" in clash.fix
    shared = await measured_reducers(fan_graph(both_write_value=False))
    assert shared.status == "pass", shared.evidence
    assert "left, right" in shared.evidence and "after __start__" in shared.evidence


async def test_a_sibling_that_can_write_the_same_key_is_a_warning(tmp_path: Path) -> None:
    # `notes` writes `summary` only for some questions: the probes' may never hit it.
    async def risk(state: Fan) -> dict[str, Any]:
        return {"value": 1}

    async def notes(state: Fan) -> dict[str, Any]:
        return {"value": 2} if state.get("left") == 42 else {"items": [1]}

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(Fan)
    builder.add_node("risk", risk)
    builder.add_node("notes", notes)
    builder.add_conditional_edges(START, lambda s: ["risk", "notes"], ["risk", "notes"])
    found = await measured_reducers(builder.compile())
    assert found.status == "warn", found.evidence
    assert "risk writes value and notes's code names it" in found.evidence


async def test_a_send_fan_out_over_a_last_value_key_fails() -> None:
    async def work(state: Fan) -> dict[str, Any]:
        return {"value": state.get("value", 0), "items": [1]}

    def spread(state: Fan) -> list[Send]:
        return [Send("work", {"value": n}) for n in range(3)]

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(Fan)
    builder.add_node("work", work)
    builder.add_conditional_edges(START, spread, ["work"])
    found = await measured_reducers(builder.compile())
    assert found.status == "fail", found.evidence
    assert "work runs 3 times in one step (Send) and writes value" in found.evidence


async def test_parallel_nodes_that_never_ran_leave_the_verdict_open() -> None:
    async def broken(state: Fan) -> dict[str, Any]:
        raise RuntimeError("this node fails")

    async def fine(state: Fan) -> dict[str, Any]:
        return {"value": 1}

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(Fan)
    builder.add_node("broken", broken)
    builder.add_node("fine", fine)
    builder.add_edge(START, "broken")
    builder.add_edge(START, "fine")
    found = await measured_reducers(builder.compile())
    assert found.status == "n/a" and "broken never ran" in found.evidence, found.evidence


# -- isolation -------------------------------------------------------------------------------

def two_service_graph(*, sync: bool, shared_gate: asyncio.Semaphore | None = None,
                      timeout: float = 1.0) -> Any:
    """Order questions call the carrier, the rest a policy service."""

    def route(state: MessagesState) -> str:
        return "track" if "order" in str(state["messages"][-1].content) else "policy"

    def node(url: str) -> Any:
        if sync:
            def call(state: MessagesState) -> dict[str, Any]:
                httpx.get(url, timeout=timeout)
                return {"messages": [{"role": "assistant", "content": url}]}
            return call

        async def acall(state: MessagesState) -> dict[str, Any]:
            async with httpx.AsyncClient(timeout=timeout) as client:
                if shared_gate is None:
                    await client.get(url)
                else:
                    async with shared_gate:  # one gate for every dependency
                        await client.get(url)
            return {"messages": [{"role": "assistant", "content": url}]}
        return acall

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(MessagesState)
    builder.add_node("track", node("http://carrier.example/v1/shipments/1"))
    builder.add_node("policy", node("http://policy.example/v1/policy"))
    builder.add_conditional_edges(START, route, ["track", "policy"])
    builder.add_edge("track", END)
    builder.add_edge("policy", END)
    return builder.compile()


async def isolation(graph: Any, inputs: list[Any], cap_s: float = 2.0) -> Finding:
    runs = await baseline(graph, inputs, timeout_s=10)
    found, _ = await isolation_finding(graph, runs, lambda n: inputs[n % len(inputs)],
                                       cap_s=cap_s)
    return found


async def test_independent_dependencies_are_isolated() -> None:
    found = await isolation(two_service_graph(sync=False), [ORDER, POLICY] * 2)
    assert found.status == "pass", found.evidence
    assert "carrier.example hanging" in found.evidence
    assert "policy.example failing" in found.evidence
    assert found.figure == 0


async def test_one_gate_for_every_dependency_lets_a_hanging_one_starve_the_rest() -> None:
    found = await isolation(two_service_graph(sync=False, shared_gate=asyncio.Semaphore(2)),
                            [ORDER, POLICY] * 2)
    assert found.status == "fail", found.evidence
    assert re.search(r"carrier\.example hanging.*hurt: route 1", found.evidence)
    assert "bulkhead" in found.fix


async def test_blocking_calls_in_sync_nodes_starve_the_thread_pool() -> None:
    # LangGraph runs sync nodes on the loop's thread pool: requests that hang there hold it.
    found = await isolation(two_service_graph(sync=True, timeout=30.0), [ORDER, POLICY] * 2)
    assert found.status == "fail", found.evidence
    assert "not back" in found.evidence


async def test_isolation_is_open_when_every_request_needs_the_same_dependency() -> None:
    found = await isolation(two_service_graph(sync=False), [ORDER] * 3)
    assert found.status == "n/a" and "every request that answered called it" in found.evidence


# -- traces ----------------------------------------------------------------------------------

async def traced(graph: Any, inputs: list[Any]) -> tuple[Caught, list[Call]]:
    carried = [with_personal_data(given)[0] for given in inputs]
    with intercepted(healthy) as box, catching() as caught:
        for n, given in enumerate(carried):
            await run_one(graph, given, box, route=n, tag="trace", timeout_s=10)
    return caught, [c for c in box.calls if c.run_id is not None]


def _anonymize(value: Any) -> Any:
    if isinstance(value, str):
        for secret in PERSONAL.values():
            value = value.replace(secret, "[redacted]")
        return value
    if isinstance(value, dict):
        return {k: _anonymize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_anonymize(v) for v in value]
    return value


async def test_an_agent_traced_through_a_redacting_client_passes_both_checks() -> None:
    with traced_load():
        langsmith.configure(client=langsmith.Client(anonymizer=_anonymize,
                                                     api_key="lsv2-test"))
        caught, calls = await traced(create_react_agent(llm(), [track]), [ORDER, ORDER])
    spans = calls_finding(caught, calls, roots=2)
    assert spans.status == "pass", spans.evidence
    assert "carrier.example" in spans.evidence and "model.example" in spans.evidence
    assert redaction_finding(caught, sent=True).status == "pass"
    assert caught.requests > 0  # sent through the graph's own client, caught in-process


async def test_personal_data_in_an_unredacted_trace_is_found() -> None:
    with traced_load():
        caught, calls = await traced(create_react_agent(llm(), [track]), [ORDER])
    found = redaction_finding(caught, sent=True)
    assert found.status == "fail" and "email, phone, card" in found.evidence, found.evidence
    assert "anonymizer" in found.fix
    assert redaction_finding(caught, sent=False).status == "n/a"


async def test_a_call_made_outside_any_model_or_tool_span_fails() -> None:
    async def fetch(state: MessagesState) -> dict[str, Any]:
        async with httpx.AsyncClient() as client:  # a bare call: no tool, no span
            await client.get("http://tools.example/lookup")
        return {}

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(MessagesState)
    builder.add_node("fetch", fetch)
    builder.add_edge(START, "fetch")
    with traced_load():
        caught, calls = await traced(builder.compile(), [ORDER])
    found = calls_finding(caught, calls, roots=1)
    assert found.status == "fail", found.evidence
    assert "tools.example/lookup was made outside any model or tool span (in node fetch)" in (
        found.evidence)


async def test_a_model_called_from_a_bare_thread_is_a_trace_of_its_own() -> None:
    model = llm()

    async def think(state: MessagesState) -> dict[str, Any]:
        said: list[Any] = []
        worker = threading.Thread(target=lambda: said.append(model.invoke("hi")))
        worker.start()  # no context: the model's run starts a trace of its own
        await asyncio.to_thread(worker.join)
        return {"messages": said}

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(MessagesState)
    builder.add_node("think", think)
    builder.add_edge(START, "think")
    with traced_load():
        caught, calls = await traced(builder.compile(), [ORDER])
    found = calls_finding(caught, calls, roots=1)
    assert found.status == "fail", found.evidence
    assert "a trace of its own" in found.evidence or "in no traced run" in found.evidence


def test_personal_data_goes_into_the_first_text_of_any_input() -> None:
    carried, sent = with_personal_data({"query": {"text": "hello"}, "n": 1})
    assert sent and PERSONAL["email"] in carried["query"]["text"] and carried["n"] == 1
    assert with_personal_data({"n": 1}) == ({"n": 1}, False)
    messages, _ = with_personal_data({"messages": [("user", "hi")]})
    assert PERSONAL["card"] in messages["messages"][0][1]


# -- the whole scorecard ---------------------------------------------------------------------

SUPERVISED = '''
import httpx
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.prebuilt import create_react_agent

@tool
async def track(order_id: str) -> str:
    """Track an order."""
    async with httpx.AsyncClient(timeout=0.3) as client:
        return (await client.get(f"http://carrier.example/v1/{order_id}")).text

graph = create_react_agent(ChatOpenAI(model="m", api_key="k", base_url="http://model.example/v1",
                                      max_retries=0, timeout=0.3), [track])
'''


async def test_every_probe_reports_on_a_graph_written_elsewhere(tmp_path: Path) -> None:
    (tmp_path / "agent.py").write_text(SUPERVISED)
    card = await assess(f"{tmp_path / 'agent.py'}:graph", hang_cap_s=1.0, isolation_cap_s=1.0)
    [report] = card.graphs
    found = {f.id: f for f in report.findings}
    assert {"resilience.isolation", "traces.calls", "traces.redaction",
            "state.reducers"} <= set(found)
    assert found["resilience.amplification"].status == "pass"  # one layer, no retries
    assert found["resilience.isolation"].status == "pass", found["resilience.isolation"]
    assert found["traces.calls"].status == "pass", found["traces.calls"].evidence
    assert found["traces.redaction"].status == "fail"  # nothing redacts its trace
    assert found["state.reducers"].status == "pass"
    measured = report.measurements
    assert measured["baseline"]["hosts"][1] == ["model.example"]
    assert {o["mode"] for o in measured["resilience.isolation"]} == {"failing", "hanging"}
    # Nothing of the probe's tracing is left behind.
    from langsmith import run_trees
    assert run_trees._CLIENT is None or "assess" not in str(run_trees._CLIENT.api_key)
    assert not langsmith.utils.tracing_is_enabled()

