"""`interlock assess` on graphs written the way teams write them: each verdict as a reader sees it.

Each test is a graph that visibly has, or visibly lacks, what one check looks for; several came
from a review that ran the assessment on graphs the suite had never seen.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from graphs.assess import assess
from graphs.assess.scorecard import Finding

HEADER = '''
import operator
from typing import Annotated, Any, TypedDict
import httpx
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command, Send, interrupt
'''


async def verdicts(tmp_path: Path, source: str, attr: str = "graph", **options: Any
                   ) -> dict[str, Finding]:
    path = tmp_path / f"g_{abs(hash(source))}.py"
    path.write_text(HEADER + source)
    card = await assess(f"{path}:{attr}", hang_cap_s=options.pop("hang_cap_s", 1.0),
                        isolation_cap_s=1.0, **options)
    [report] = card.graphs
    return {f.id: f for f in report.findings}


async def test_a_command_without_annotation_is_an_undeclared_route(tmp_path: Path) -> None:
    found = await verdicts(tmp_path, '''
def triage(state: MessagesState):
    return Command(goto="faq")

def faq(state: MessagesState):
    return {"messages": [{"role": "assistant", "content": "see the faq"}]}

b = StateGraph(MessagesState)
b.add_node("triage", triage)
b.add_node("faq", faq)
b.add_edge(START, "triage")
graph = b.compile()
''')
    assert found["ordering.routes"].status == "warn"
    assert "node triage returns Command without destinations" in found["ordering.routes"].evidence
    assert found["ordering.reachable"].status == "n/a"  # not "faq is dead code"
    assert found["ordering.cycles"].status == "n/a"


async def test_send_from_a_routing_function_over_a_last_value_key_fails(tmp_path: Path) -> None:
    found = await verdicts(tmp_path, '''
class S(TypedDict, total=False):
    topics: list[str]
    summary: str

def fan(state: S):
    return [Send("summarize", {"topic": t}) for t in state["topics"]]

def summarize(arg: dict):
    return {"summary": arg["topic"]}

b = StateGraph(S)
b.add_node("summarize", summarize)
b.add_conditional_edges(START, fan, ["summarize"])
graph = b.compile()
''')  # no --input: the probe fills the input schema, two topics in the list
    reducers = found["state.reducers"]
    assert reducers.status == "fail", reducers.evidence
    assert "summarize runs 2 times in one step (Send) and writes summary" in reducers.evidence


async def test_a_loop_nothing_ends_fails_cycles(tmp_path: Path) -> None:
    found = await verdicts(tmp_path, '''
def loop(state: MessagesState):
    return {"messages": [{"role": "assistant", "content": "again"}]}

b = StateGraph(MessagesState)
b.add_node("loop", loop)
b.add_edge(START, "loop")
b.add_conditional_edges("loop", lambda s: "loop")
graph = b.compile()
''')
    cycles = found["ordering.cycles"]
    assert cycles.status == "fail" and "recursion limit" in cycles.evidence, cycles.evidence


REFUND = '''
class S(TypedDict, total=False):
    order: str
    decision: Any

def refund(state: S):
    {before}
    decision = interrupt({{"approve": state["order"]}})
    {after}
    return {{"decision": decision}}

b = StateGraph(S)
b.add_node("refund", refund)
b.add_edge(START, "refund")
graph = b.compile()
'''
PAY = 'httpx.post("http://payments.example/v1/refunds", json={"order": state["order"]}KEYED)'


@pytest.mark.parametrize(("before", "after", "status"), [
    (PAY.replace("KEYED", ""), "", "fail"),  # paid, then asked: paid again on resume
    ("", PAY.replace("KEYED", ""), "pass"),  # asked first
    (PAY.replace("KEYED", ', headers={"Idempotency-Key": state["order"]}'), "", "pass"),
])
async def test_side_effects_before_an_interrupt_are_found(tmp_path: Path, before: str,
                                                         after: str, status: str) -> None:
    found = await verdicts(tmp_path, REFUND.replace("{before}", before or "pass")
                           .replace("{after}", after or "pass").replace("{{", "{")
                           .replace("}}", "}"))
    interrupts = found["state.interrupts"]
    assert interrupts.status == status, interrupts.evidence
    if status == "fail":
        assert "node refund sent POST payments.example/v1/refunds and then interrupted" in (
            interrupts.evidence)
        assert "interrupt() before the side effect" in interrupts.fix


async def test_a_tools_own_retry_loop_behind_a_model_is_measured(tmp_path: Path) -> None:
    found = await verdicts(tmp_path, '''
@tool
def stock(sku: str) -> str:
    """Stock level of a SKU."""
    for _ in range(6):  # its own retries, on any transport error
        try:
            return httpx.get(f"http://stock.example/v1/{sku}", timeout=0.5).text
        except httpx.HTTPError:
            continue
    return "unknown"

from langgraph.prebuilt import create_react_agent
graph = create_react_agent(ChatOpenAI(model="m", api_key="k", base_url="http://model.example/v1",
                                      max_retries=0, timeout=0.5), [stock])
''')
    amplification = found["resilience.amplification"]
    assert amplification.status == "fail", amplification.evidence
    assert "stock.example: 30 calls for 5 logical calls" in amplification.evidence
    assert "model.example" in amplification.evidence  # and the model, taken down on its own
    assert "remove the retry loop around the calls to stock.example in node tools" in (
        amplification.fix)


async def test_a_fan_out_or_a_bounded_poll_is_not_amplification(tmp_path: Path) -> None:
    found = await verdicts(tmp_path, '''
class S(TypedDict, total=False):
    done: Annotated[list[str], operator.add]

def fetch(arg: dict):
    return {"done": [httpx.get(f"http://wiki.example/{arg['page']}", timeout=0.5).text]}

def poll(state: S):
    for _ in range(3):  # polls three times whatever the answer
        httpx.get("http://jobs.example/v1/status", timeout=0.5)
    return {}

b = StateGraph(S)
b.add_node("fetch", fetch)
b.add_node("poll", poll)
b.add_conditional_edges(START, lambda s: [Send("fetch", {"page": p}) for p in "abc"], ["fetch"])
b.add_edge("fetch", "poll")
graph = b.compile()
''')
    amplification = found["resilience.amplification"]
    assert amplification.status == "pass", amplification.evidence
    assert "wiki.example: 15 calls for 15 logical calls" in amplification.evidence


async def test_breaking_counts_only_the_requests_that_need_the_dependency(
        tmp_path: Path) -> None:
    found = await verdicts(tmp_path, '''
def route(state: MessagesState) -> str:
    return "billing" if "order" in str(state["messages"][-1].content) else "faq"

def billing(state: MessagesState):
    httpx.get("http://billing.example/v1/balance", timeout=0.5)
    return {}

def faq(state: MessagesState):
    return {}

b = StateGraph(MessagesState)
b.add_node("billing", billing)
b.add_node("faq", faq)
b.add_conditional_edges(START, route, ["billing", "faq"])
graph = b.compile()
''')
    breaking = found["resilience.breaking"]
    assert breaking.status == "fail", breaking.evidence  # every request that needs it calls it
    assert "billing.example: calls per request, in order: 1, 1, 1" in breaking.evidence


async def test_a_requests_client_is_answered_and_its_missing_timeout_named(
        tmp_path: Path) -> None:
    found = await verdicts(tmp_path, '''
import requests

def lookup(state: MessagesState):
    for _ in range(5):
        try:
            return {"messages": [{"role": "assistant",
                                  "content": requests.get("http://inventory.example/v1").text}]}
        except requests.RequestException:
            continue
    return {}

b = StateGraph(MessagesState)
b.add_node("lookup", lookup)
b.add_edge(START, "lookup")
graph = b.compile()
''')
    assert found["resilience.amplification"].status == "fail"  # 5 tries on a refused connection
    deadlines = found["resilience.deadlines"]
    assert deadlines.status == "fail", deadlines.evidence
    assert "requests.get(..., timeout=...); now: none" in deadlines.fix
    assert "timeout= on node" not in deadlines.fix  # a sync node: LangGraph cannot time it out


async def test_bounded_calls_retried_past_the_cap_warn_rather_than_fail(tmp_path: Path) -> None:
    found = await verdicts(tmp_path, '''
async def ask(state: MessagesState):
    async with httpx.AsyncClient(timeout=0.4) as client:
        for _ in range(4):
            try:
                await client.get("http://slow.example/v1")
                break
            except httpx.TimeoutException:
                continue
    return {}

b = StateGraph(MessagesState)
b.add_node("ask", ask)
b.add_edge(START, "ask")
graph = b.compile()
''')
    deadlines = found["resilience.deadlines"]
    assert deadlines.status == "warn", deadlines.evidence
    assert "every call was bounded (0.4 s)" in deadlines.evidence and "add up past the cap" in (
        deadlines.evidence)


async def test_a_factory_that_reads_its_config_and_an_async_one_load(tmp_path: Path) -> None:
    source = '''
def build(config):
    assert "configurable" in config
    b = StateGraph(MessagesState)
    b.add_node("n", lambda s: {})
    b.add_edge(START, "n")
    return b.compile()

async def abuild():
    return build({"configurable": {}})
'''
    for attr in ("build", "abuild"):
        found = await verdicts(tmp_path, source, attr)
        assert found["ordering.routes"].status == "pass"


async def test_nothing_reaches_the_real_transport_during_or_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx2  # type: ignore[import-not-found,unused-ignore]

    escaped: list[str] = []
    for module in (httpx, httpx2):
        def spy(self: Any, request: Any, module: Any = module) -> Any:
            escaped.append(str(request.url))
            raise module.ConnectError("test: the real transport", request=request)
        monkeypatch.setattr(module.HTTPTransport, "handle_request", spy)
    # A model with the SDK's defaults (600 s timeout, 2 retries) called from a sync node: the
    # hang probe leaves a worker thread waiting, which retries when it is released.
    started = time.monotonic()
    await verdicts(tmp_path, '''
llm = ChatOpenAI(model="m", api_key="k", base_url="http://model.example/v1")

def chat(state: MessagesState):
    return {"messages": [llm.invoke(state["messages"])]}

b = StateGraph(MessagesState)
b.add_node("chat", chat)
b.add_edge(START, "chat")
graph = b.compile()
''')
    await asyncio.sleep(1.5)
    assert escaped == [], escaped
    assert time.monotonic() - started < 60


TOOLS_BEHIND_A_MODEL = '''
import requests
from langchain_core.messages import ToolMessage
from langchain_core.tools import InjectedToolCallId

@tool
def stock(sku: str, call: Annotated[str, InjectedToolCallId]) -> Command:
    """Stock of a SKU."""
    text = requests.get(f"http://stock.internal/v1/{sku}").text  # no timeout
    return Command(update={"status": "stock: " + text,
                           "messages": [ToolMessage(text, tool_call_id=call)]})

@tool
def price(sku: str, call: Annotated[str, InjectedToolCallId]) -> Command:
    """Price of a SKU."""
    text = requests.get(f"http://price.internal/v1/{sku}", timeout=1).text
    return Command(update={"status": "price: " + text,
                           "messages": [ToolMessage(text, tool_call_id=call)]})

from langgraph.prebuilt import create_react_agent
from langgraph.prebuilt.chat_agent_executor import AgentState

class S(AgentState, total=False):
    status: str

graph = create_react_agent(ChatOpenAI(model="m", api_key="k", base_url="http://model.example/v1",
                                      max_retries=0, timeout=5), [stock, price], state_schema=S)
'''


async def test_a_tool_behind_a_model_without_a_timeout_fails_deadlines(tmp_path: Path) -> None:
    found = await verdicts(tmp_path, TOOLS_BEHIND_A_MODEL)
    deadlines = found["resilience.deadlines"]
    assert deadlines.status == "fail", deadlines.evidence
    assert "stock.internal hanging: not back" in deadlines.evidence
    assert "requests.get(..., timeout=...); now: none" in deadlines.fix


async def test_parallel_tool_calls_writing_one_key_fail_reducers(tmp_path: Path) -> None:
    found = await verdicts(tmp_path, TOOLS_BEHIND_A_MODEL)
    reducers = found["state.reducers"]  # one model turn calling both tools: two writes
    assert reducers.status == "fail", reducers.evidence
    assert "InvalidUpdateError" in reducers.evidence and "status" in reducers.evidence


async def test_a_subgraph_inherits_its_parents_checkpointer(tmp_path: Path) -> None:
    found = await verdicts(tmp_path, '''
from langgraph.checkpoint.sqlite import SqliteSaver

inner = StateGraph(MessagesState)
inner.add_node("leaf", lambda s: {})
inner.add_edge(START, "leaf")
outer = StateGraph(MessagesState)
outer.add_node("inner", inner.compile())
outer.add_edge(START, "inner")
graph = outer.compile(checkpointer=SqliteSaver.from_conn_string(":memory:").__enter__())
''')
    assert found["state.checkpointer"].status == "pass"
    inherited = found["inner/state.checkpointer"]
    assert inherited.status == "pass" and "inherits" in inherited.evidence
