"""Static checks: what a compiled LangGraph graph declares, read from the graph itself.

Routes (conditional edges with or without a path map, `Command` nodes with or without
declared destinations), reachability, cycles and what bounds them, parallel fan-out and the
state keys it could write without a reducer, node retry policies, timeouts and error
handlers, the checkpointer and interrupts. Subgraphs are assessed the same way, their ids
prefixed with the node that holds them.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator, Mapping
from typing import Any, get_type_hints

from langgraph.channels.binop import BinaryOperatorAggregate
from langgraph.channels.last_value import LastValue
from langgraph.graph import END, START, StateGraph
from langgraph.pregel import Pregel
from langgraph.types import Command

from graphs.assess.scorecard import Finding

__all__ = ["DEFAULT_RECURSION_LIMIT", "graphs_by_path", "last_value_keys", "parallel_groups",
           "static_findings"]

DEFAULT_RECURSION_LIMIT = 25
"""LangGraph's recursion limit when a run's config sets none."""


def _function(node: Any) -> Any:
    """The Python function behind a node's runnable, if one can be found."""
    runnable = getattr(node, "runnable", node)
    for attr in ("afunc", "func"):
        if callable(found := getattr(runnable, attr, None)):
            return found
    return runnable if inspect.isfunction(runnable) else None


def _source(function: Any) -> str:
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        return ""


def _returns_command(node: Any) -> bool:
    """Whether a node routes with `Command`: by its return annotation, or by its code."""
    function = _function(node)
    if function is None:
        return False
    try:
        hint = get_type_hints(function).get("return")
    except Exception:  # an annotation that does not resolve: read it as text
        hint = getattr(function, "__annotations__", {}).get("return")
    text = str(hint)
    return hint is Command or "Command" in text or "Command(" in _source(function)


def _routes(builder: StateGraph[Any, Any, Any, Any]
            ) -> tuple[dict[str, set[str]], list[str], list[str]]:
    """Declared successors of each node, and the routes that declare none (branches, nodes)."""
    succ: dict[str, set[str]] = {n: set() for n in [START, *builder.nodes]}
    for source, target in builder.edges:
        for s in (source,) if isinstance(source, str) else source:
            succ.setdefault(s, set()).add(target)
    for targets in builder.waiting_edges if hasattr(builder, "waiting_edges") else ():
        sources, target = targets
        for s in sources:
            succ.setdefault(s, set()).add(target)
    open_branches: list[str] = []
    for source, branches in builder.branches.items():
        for name, branch in branches.items():
            if branch.ends:
                succ.setdefault(source, set()).update(branch.ends.values())
            else:
                open_branches.append(f"{source} ({name})")
    open_commands: list[str] = []
    for name, spec in builder.nodes.items():
        if spec.ends:
            succ[name].update(spec.ends)
        elif _returns_command(spec) and not _is_handler(spec):
            open_commands.append(name)
    return succ, open_branches, open_commands


def _is_handler(spec: Any) -> bool:
    """An error handler LangGraph added for a node (`add_node(..., error_handler=...)`)."""
    return bool(getattr(spec, "is_error_handler", False))


def _sends(spec: Any) -> bool:
    """Whether a node's own code, or a routing function, sends work out in parallel (`Send`)."""
    function = _function(spec)
    return function is not None and "Send(" in _source(function)


def _returns_list(spec: Any) -> bool:
    """Whether a routing function can return several nodes at once (a list): parallel."""
    function = _function(spec)
    return function is not None and bool(re.search(r"return\s*\[", _source(function)))


def _reachable(succ: Mapping[str, set[str]]) -> set[str]:
    seen, todo = {START}, [START]
    while todo:
        for nxt in succ.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _cycle(succ: Mapping[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(succ.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if state.get(nxt) is None and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    return next((c for n in sorted(succ) if state.get(n) is None and (c := visit(n))), None)


def last_value_keys(channels: Mapping[str, Any]) -> list[str]:
    """State keys a second writer in the same step would conflict on (last value only)."""
    return sorted(k for k, c in channels.items() if not k.startswith(("__", "branch:"))
                  and isinstance(c, LastValue) and not isinstance(c, BinaryOperatorAggregate))


def parallel_groups(builder: StateGraph[Any, Any, Any, Any]) -> dict[str, set[str]]:
    """Nodes that run in one step after each fan-out source with two or more static edges."""
    static: dict[str, set[str]] = {}
    for source, target in builder.edges:
        static.setdefault(source, set()).add(target)
    return {n: targets - {END} for n, targets in static.items() if len(targets - {END}) > 1}


def _fan_out(builder: StateGraph[Any, Any, Any, Any]) -> list[str]:
    """Nodes after which several nodes run in the same step: two static edges, or `Send`."""
    fans = set(parallel_groups(builder))
    fans |= {n for n, spec in builder.nodes.items() if _sends(spec)}
    fans |= {source for source, branches in builder.branches.items()
             for branch in branches.values()
             if _sends(branch.path) or _returns_list(branch.path)}
    return sorted(fans)


def _subgraphs(builder: StateGraph[Any, Any, Any, Any]
               ) -> Iterator[tuple[str, Pregel[Any, Any, Any, Any]]]:
    for name, spec in builder.nodes.items():
        if isinstance(spec.runnable, Pregel):
            yield name, spec.runnable


def graphs_by_path(graph: Pregel[Any, Any, Any, Any], prefix: str = ""
                   ) -> dict[str, Pregel[Any, Any, Any, Any]]:
    """The graph under `""` and each subgraph added as a node under `node/` (nested: `a/b/`)."""
    found = {prefix: graph}
    builder = getattr(graph, "builder", None)
    if isinstance(builder, StateGraph):
        for name, sub in _subgraphs(builder):
            found.update(graphs_by_path(sub, f"{prefix}{name}/"))
    return found


def static_findings(graph: Pregel[Any, Any, Any, Any], prefix: str = "") -> list[Finding]:
    """Every static finding on `graph` and, recursively, its subgraphs."""
    builder = getattr(graph, "builder", None)
    if not isinstance(builder, StateGraph):
        saver = graph.checkpointer
        return [Finding(id=f"{prefix}ordering.structure", area="ordering",
                        title="graph structure", status="n/a",
                        evidence="not built with StateGraph (the functional API, or a graph "
                                 "of its own): its routes cannot be read, only run"),
                Finding(id=f"{prefix}state.checkpointer", area="state",
                        title="runs are checkpointed",
                        status="pass" if saver is not None else "warn",
                        evidence=f"compiled with {type(saver).__name__}"
                        if saver not in (None, True, False) else
                        "compiled without a checkpointer: no history, resume or replay unless "
                        "a server provides one",
                        fix="" if saver is not None else "pass checkpointer= to @entrypoint "
                                                         "or compile(), or serve it on a "
                                                         "LangGraph server that provides one")]
    own = [n for n, spec in builder.nodes.items() if not _is_handler(spec)]
    succ, open_branches, open_commands = _routes(builder)
    open_routes = [*open_branches, *open_commands]
    findings: list[Finding] = []

    def add(check: str, area: Any, title: str, status: Any, evidence: str,
            figure: float | int | None = None, fix: str = "") -> None:
        findings.append(Finding(id=f"{prefix}{check}", area=area, title=title, status=status,
                                evidence=evidence, figure=figure, fix=fix))

    declared = not open_routes
    add("ordering.routes", "ordering", "every route is declared",
        "pass" if declared else "warn",
        "every conditional edge has a path map and every Command node declares its "
        "destinations" if declared else
        "undeclared: " + "; ".join(
            [*(f"conditional edge from {b} has no path map" for b in open_branches),
             *(f"node {c} returns Command without destinations" for c in open_commands)]),
        figure=len(open_routes),
        fix="; ".join([*(f"give the conditional edge from {b.split(' ')[0]} a path map "
                         f"(add_conditional_edges(..., path_map=[...]))" for b in open_branches),
                       *(f"declare destinations on node {c} (add_node({c!r}, ..., "
                         f"destinations=(...)))" for c in open_commands)]))
    if declared:
        unreachable = sorted(set(own) - _reachable(succ))
        add("ordering.reachable", "ordering", "every node is reachable",
            "warn" if unreachable else "pass",
            f"no declared route from START reaches {', '.join(unreachable)}: dead code, or "
            f"entered only by a caller's Command(goto=...)" if unreachable
            else f"all {len(own)} nodes are reachable from START", figure=len(unreachable),
            fix=f"remove {', '.join(unreachable)}, or add the route that enters it"
            if unreachable else "")
    else:
        add("ordering.reachable", "ordering", "every node is reachable", "n/a",
            "undeclared routes may lead anywhere: reachability cannot be read")
    cycle = _cycle(succ)
    add("ordering.cycles", "ordering", "cycles are bounded",
        "warn" if cycle else ("pass" if declared else "n/a"),
        f"cycle {' -> '.join(cycle)}: nothing the graph declares ends it but the recursion "
        f"limit ({DEFAULT_RECURSION_LIMIT} steps by default); a bound in the nodes' own code "
        f"(a hop counter) is not visible here" if cycle
        else "no cycle among the declared routes" + ("" if declared else
                                                     "; undeclared routes may loop"),
        fix="bound the loop in state (a hop counter the router checks) and set an explicit "
            "recursion_limit" if cycle else "")
    fans, shared = _fan_out(builder), last_value_keys(graph.channels)
    if fans and shared:
        # Which keys a node writes is known only once it runs: a graph that fans out over
        # last-value keys is measured, not guessed (`graphs.assess.writers`).
        add("state.reducers", "state", "concurrent writers have reducers", "n/a",
            f"after {', '.join(fans)} several nodes run in one step, and {len(shared)} state "
            f"keys keep only the last value ({', '.join(shared[:8])}"
            f"{'…' if len(shared) > 8 else ''}); two parallel nodes writing one of them in the "
            f"same step fail the run (InvalidUpdateError). Which keys the parallel nodes "
            f"write cannot be read without running them", figure=len(shared))
    else:
        add("state.reducers", "state", "concurrent writers have reducers", "pass",
            "no parallel fan-out" if not fans else "every state key has a reducer",
            figure=len(shared) if fans else 0)
    retried = {n: s.retry_policy for n, s in builder.nodes.items() if s.retry_policy}
    attempts = {n: max(getattr(p, "max_attempts", 1) for p in (
        [r] if hasattr(r, "max_attempts") else r)) for n, r in retried.items()}
    add("resilience.node_retries", "resilience", "no node retry policies",
        "warn" if retried else "pass",
        "node retry policies: " + ", ".join(f"{n} ({a} attempts)" for n, a in attempts.items())
        + "; they multiply with the SDK's and the tools' own retries" if retried
        else "no node retry policy (retries in code, the SDK's and the tools', are measured "
             "by resilience.amplification)", figure=max(attempts.values(), default=1),
        fix="; ".join(f"remove the RetryPolicy of {n} and retry in one place (one governor, "
                      f"with a budget); set max_retries=0 on the clients it uses"
                      for n in attempts))
    timed = sorted(n for n, s in builder.nodes.items() if s.timeout is not None and n in own)
    untimed = sorted(set(own) - set(timed))
    add("resilience.timeouts", "resilience", "nodes have timeouts",
        "pass" if not untimed else "warn",
        f"{len(timed)} of {len(own)} nodes have a timeout"
        + (f"; none on {', '.join(untimed[:8])}{'…' if len(untimed) > 8 else ''}"
           if untimed else ""), figure=len(timed),
        fix="" if not untimed else f"set timeout= on those of {', '.join(untimed[:4])}"
                                   f"{'…' if len(untimed) > 4 else ''} that call out (async "
                                   f"nodes), or bound their calls with a deadline")
    handled = sorted(n for n, s in builder.nodes.items()
                     if n in own and getattr(s, "error_handler_node", None))
    add("resilience.error_handlers", "resilience", "failures are handled per node",
        "pass" if handled else "warn",
        f"error handlers on {', '.join(handled)}" if handled
        else "no node has an error handler: one failing node fails the whole run",
        figure=len(handled),
        fix="" if handled else "add error_handler= to the nodes that call dependencies, so a "
                               "failure is reported as data and the rest of the run carries on")
    saver = graph.checkpointer
    in_memory = type(saver).__name__ in ("InMemorySaver", "MemorySaver")
    inherits = saver is True or (saver is None and bool(prefix))
    add("state.checkpointer", "state", "runs are checkpointed",
        "warn" if saver is None and not inherits or in_memory else "pass",
        "inherits its parent's checkpointer" if inherits else
        (f"compiled with {type(saver).__name__}: it keeps nothing across a restart"
         if in_memory else f"compiled with {type(saver).__name__}")
        if saver not in (None, False) or inherits else
        ("compiled with checkpointer=False: its runs keep no state" if saver is False else
         "compiled without a checkpointer: no history, resume or replay unless a server "
         "provides one"),
        fix="compile with a durable checkpointer (AsyncSqliteSaver or AsyncPostgresSaver), or "
            "serve it on a LangGraph server that provides one"
        if (saver is None and not inherits) or in_memory else "")
    if not prefix:  # a subgraph runs with its parent's durability
        durability = ((getattr(graph, "config", None) or {}).get("configurable") or {}).get(
            "__pregel_durability")
        mode = durability or "async"
        add("state.durability", "state", "every step is durable before the next",
            "n/a" if saver is False else ("pass" if mode == "sync" else "warn"),
            f"runs default to durability={mode!r}"
            + (" (set on the graph)" if durability else " (LangGraph's default; a caller may pass "
                                                        "durability= per run)")
            + {"sync": ": each checkpoint is written before the next step starts",
               "async": ": a checkpoint is written while the next step runs, so a crash can lose "
                        "the last step, and a side effect made in it is made again on resume",
               "exit": ": nothing is written until the run ends, so a crash loses the whole run "
                       "and every side effect in it is made again"}.get(mode, ""),
            fix="" if mode == "sync" else "run it with durability=\"sync\" (graph.ainvoke(..., "
                                          "durability=\"sync\"), or the run's durability on a "
                                          "LangGraph server) where steps have side effects")
    before = list(getattr(graph, "interrupt_before_nodes", []) or [])
    after = list(getattr(graph, "interrupt_after_nodes", []) or [])
    add("state.interrupts", "state", "human checkpoints are declared", "n/a" if not (
        before or after) else "pass",
        f"interrupt before {before or '-'}, after {after or '-'}" if before or after else
        "no static interrupts (interrupt() inside nodes is found by running the graph)")
    for name, sub in _subgraphs(builder):
        findings.extend(static_findings(sub, prefix=f"{prefix}{name}/"))
    return findings
