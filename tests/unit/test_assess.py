"""`interlock assess` static checks, each on small graphs built to pass it or fail it."""

from __future__ import annotations

import json
import operator
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, RetryPolicy, Send
from typing_extensions import TypedDict

from graphs.assess import assess, load_targets, static_findings
from graphs.assess.scorecard import Finding
from graphs.cli import main
from graphs.core.errors import InputError


class S(TypedDict, total=False):
    value: int
    items: Annotated[list[int], operator.add]


async def step(state: S) -> dict[str, Any]:
    return {"value": 1}


def finding(graph: Any, check: str) -> Finding:
    [found] = [f for f in static_findings(graph) if f.id == check]
    return found


def chain(*names: str) -> StateGraph[Any, Any, Any, Any]:
    builder: StateGraph[Any, Any, Any, Any] = StateGraph(S)
    for name in names:
        builder.add_node(name, step)
    for a, b in zip((START, *names), (*names, END), strict=False):
        builder.add_edge(a, b)
    return builder


def test_routes_without_a_path_map_or_destinations_are_undeclared() -> None:
    def route(state: S) -> str:
        return "b"

    open_branch = chain("a")
    open_branch.add_node("b", step)
    open_branch.add_conditional_edges("a", route)
    found = finding(open_branch.compile(), "ordering.routes")
    assert found.status == "warn" and "conditional edge from a" in found.evidence
    assert "path map" in found.fix

    mapped = chain("a")
    mapped.add_node("b", step)
    mapped.add_conditional_edges("a", route, ["b", END])
    assert finding(mapped.compile(), "ordering.routes").status == "pass"

    async def jump(state: S) -> Command[Any]:
        return Command(goto="b")

    async def typed_jump(state: S) -> Command[Literal["b"]]:  # destinations from the type
        return Command(goto="b")

    for node, declared in ((jump, False), (jump, True), (typed_jump, True)):
        builder: StateGraph[Any, Any, Any, Any] = StateGraph(S)
        explicit = node is jump and declared
        builder.add_node("a", node, **({"destinations": ("b",)} if explicit else {}))
        builder.add_node("b", step)
        builder.add_edge(START, "a")
        found = finding(builder.compile(), "ordering.routes")
        assert found.status == ("pass" if declared else "warn"), found
        if not declared:
            assert "node a returns Command without destinations" in found.evidence
            assert "destinations" in found.fix


def test_an_unreachable_node_is_named() -> None:
    builder = chain("a")
    builder.add_node("orphan", step)
    builder.add_edge("orphan", END)
    found = finding(builder.compile(), "ordering.reachable")
    assert found.status == "warn" and "orphan" in found.evidence and found.figure == 1
    assert finding(chain("a", "b").compile(), "ordering.reachable").status == "pass"


def test_a_cycle_is_named_and_a_chain_has_none() -> None:
    def again(state: S) -> str:
        return "a"

    loop = chain("a", "b")
    loop.edges.discard(("b", END))
    loop.add_conditional_edges("b", again, ["a", END])
    found = finding(loop.compile(), "ordering.cycles")
    assert found.status == "warn" and "a -> b -> a" in found.evidence
    assert finding(chain("a", "b").compile(), "ordering.cycles").status == "pass"


def test_parallel_writers_over_last_value_keys_are_not_passed() -> None:
    fan = chain("a")
    fan.add_node("b", step)
    fan.add_node("c", step)
    fan.edges.discard(("a", END))
    fan.add_edge("a", "b")
    fan.add_edge("a", "c")
    fan.add_edge("b", END)
    fan.add_edge("c", END)
    found = finding(fan.compile(), "state.reducers")
    assert found.status == "n/a" and "after a several nodes run" in found.evidence
    assert "value" in found.evidence

    async def sends(state: S) -> Command[Any]:
        return Command(goto=[Send("b", {}), Send("b", {})])

    sender: StateGraph[Any, Any, Any, Any] = StateGraph(S)
    sender.add_node("a", sends, destinations=("b",))
    sender.add_node("b", step)
    sender.add_edge(START, "a")
    assert finding(sender.compile(), "state.reducers").status == "n/a"
    assert finding(chain("a", "b").compile(), "state.reducers").status == "pass"


def test_node_retry_policies_are_counted() -> None:
    retried: StateGraph[Any, Any, Any, Any] = StateGraph(S)
    retried.add_node("call", step, retry_policy=RetryPolicy(max_attempts=5))
    retried.add_edge(START, "call")
    found = finding(retried.compile(), "resilience.node_retries")
    assert found.status == "warn" and found.figure == 5 and "call (5 attempts)" in found.evidence
    assert "remove the RetryPolicy of call" in found.fix
    assert finding(chain("a").compile(), "resilience.node_retries").status == "pass"


def test_timeouts_and_error_handlers() -> None:
    async def handle(state: S, error: Exception) -> dict[str, Any]:
        return {"value": -1}

    guarded: StateGraph[Any, Any, Any, Any] = StateGraph(S)
    guarded.add_node("call", step, timeout=5.0, error_handler=handle)
    guarded.add_edge(START, "call")
    graph = guarded.compile()
    assert finding(graph, "resilience.timeouts").status == "pass"
    assert finding(graph, "resilience.error_handlers").status == "pass"
    bare = chain("call").compile()
    assert finding(bare, "resilience.timeouts").status == "warn"
    assert "timeout=" in finding(bare, "resilience.timeouts").fix
    assert finding(bare, "resilience.error_handlers").status == "warn"


def test_checkpointer_interrupts_and_subgraphs() -> None:
    assert finding(chain("a").compile(), "state.checkpointer").status == "warn"
    saved = chain("a").compile(checkpointer=InMemorySaver(), interrupt_before=["a"])
    in_memory = finding(saved, "state.checkpointer")
    assert in_memory.status == "warn" and "nothing across a restart" in in_memory.evidence
    from langgraph.checkpoint.sqlite import SqliteSaver
    durable = chain("a").compile(checkpointer=SqliteSaver.from_conn_string(":memory:")
                                 .__enter__())
    assert finding(durable, "state.checkpointer").status == "pass"
    assert finding(saved, "state.interrupts").status == "pass"
    outer: StateGraph[Any, Any, Any, Any] = StateGraph(S)
    outer.add_node("inner", chain("x").compile())
    outer.add_edge(START, "inner")
    ids = {f.id for f in static_findings(outer.compile())}
    assert "inner/ordering.routes" in ids and "inner/resilience.timeouts" in ids


GRAPH_FILE = '''
from langgraph.graph import StateGraph, START, END
from typing_extensions import TypedDict

class S(TypedDict):
    n: int

async def one(state: S) -> dict:
    return {"n": 1}

builder = StateGraph(S)
builder.add_node("one", one)
builder.add_edge(START, "one")
builder.add_edge("one", END)
graph = builder.compile()

def make_graph(config):
    return builder
'''


async def test_targets_load_from_a_file_a_module_a_factory_and_langgraph_json(
        tmp_path: Path) -> None:
    source = tmp_path / "agent.py"
    source.write_text(GRAPH_FILE)
    assert [n for n, _ in load_targets(f"{source}:graph")] == ["graph"]
    assert [n for n, _ in load_targets(f"{source}:builder")] == ["builder"]
    assert [n for n, _ in load_targets(f"{source}:make_graph")] == ["make_graph"]
    (tmp_path / "langgraph.json").write_text(json.dumps(
        {"graphs": {"agent": "./agent.py:graph", "made": "./agent.py:make_graph"}}))
    card = await assess(str(tmp_path / "langgraph.json"), probes=False)
    assert [g.name for g in card.graphs] == ["agent", "made"]
    assert card.to_json()["graphs"][0]["counts"]["pass"] >= 4
    assert [n for n, _ in load_targets("graphs.supervisor:build_graph")] == ["build_graph"]


@pytest.mark.parametrize("target", ["nothing.here:graph", "graphs/nowhere.py:graph",
                                    "graphs.supervisor:no_such", "graphs.supervisor",
                                    "graphs.core.errors:InputError"])
def test_a_target_that_cannot_load_is_a_clear_error(target: str) -> None:
    with pytest.raises(InputError):
        load_targets(target)


def test_the_cli_prints_one_object_and_exits_2_on_a_bad_target(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source = tmp_path / "agent.py"
    source.write_text(GRAPH_FILE)
    assert main(["assess", f"{source}:graph", "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["graphs"][0]["name"] == "graph"
    assert set(card["graphs"][0]["areas"]) == {"state", "ordering", "resilience", "traces"}
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    assert main(["assess", f"{broken}:graph"]) == 2
    assert "boom" in capsys.readouterr().err


def test_durability_is_read_from_the_graph() -> None:
    default = finding(chain("a").compile(), "state.durability")
    assert default.status == "warn" and "durability='async'" in default.evidence
    assert 'durability="sync"' in default.fix
    durable = chain("a").compile().with_config(configurable={"__pregel_durability": "sync"})
    assert finding(durable, "state.durability").status == "pass"
    ending = chain("a").compile().with_config(configurable={"__pregel_durability": "exit"})
    assert "crash loses the whole run" in finding(ending, "state.durability").evidence
