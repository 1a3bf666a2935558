"""Writers per state key, measured: which nodes wrote which keys in the healthy runs.

Nodes that run in one step (after a static fan-out, after `Send`, or seen together in a step)
must not both write a key that keeps only its last value: LangGraph fails that step with
`InvalidUpdateError`. The static check cannot see what a node writes; the baseline runs can.
"""

from __future__ import annotations

import inspect
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from langgraph.graph import StateGraph

from graphs.assess.runs import Run
from graphs.assess.scorecard import Finding
from graphs.assess.static import graphs_by_path, last_value_keys, parallel_groups

__all__ = ["writers_findings"]

_KEY = re.compile(r"At key '([^']+)'")


def _listed(names: Sequence[str] | set[str], most: int = 6) -> str:
    ordered = sorted(names)
    return ", ".join(ordered[:most]) + ("…" if len(ordered) > most else "")


def _one(path: str, graph: Any, runs: Sequence[Run]) -> Finding | None:
    builder = getattr(graph, "builder", None)
    if not isinstance(builder, StateGraph):
        return None
    last = set(last_value_keys(graph.channels))
    writes = [(n, w) for n, r in enumerate(runs) for w in r.writes if w.graph == path]
    crashed = [r.error for r in runs if r.error and "InvalidUpdateError" in r.error
               and ((named := _KEY.search(r.error)) is None
                    or named.group(1) in graph.channels)]
    if not writes and not crashed:
        return None
    writers: dict[str, set[str]] = defaultdict(set)
    ran: set[str] = set()
    steps: dict[tuple[int, str, int], list[tuple[str, tuple[str, ...]]]] = defaultdict(list)
    for n, w in writes:
        if not w.failed:
            ran.add(w.node)
        steps[(n, w.scope, w.step)].append((w.node, w.keys))
        for key in w.keys:
            writers[key].add(w.node)
    # Groups that run in one step: declared fan-outs, and what was seen running together.
    grouped = {frozenset(targets): f"after {source}"
               for source, targets in parallel_groups(builder).items()}
    conflicts: list[str] = []
    sent: dict[str, int] = {}
    for (_, _, step), tasks in steps.items():
        names = [t for t, _ in tasks]
        if len(set(names)) > 1:
            grouped.setdefault(frozenset(names), f"together in step {step}")
        for node in {t for t in names if names.count(t) > 1}:
            sent[node] = max(sent.get(node, 0), names.count(node))
            keys = sorted(set().union(*(set(k) for t, k in tasks if t == node)) & last)
            if keys:
                conflicts.append(f"{node} runs {names.count(node)} times in one step (Send) "
                                 f"and writes {', '.join(keys)}")
    groups = [(where, set(members)) for members, where in grouped.items()]
    unknown: set[str] = set()
    for where, members in groups:
        unknown |= members - ran
        for key in sorted(last):
            both = writers.get(key, set()) & members
            if len(both) > 1:
                conflicts.append(f"{' and '.join(sorted(both))} run {where} and both write "
                                 f"{key}")
    conflicts = list(dict.fromkeys(conflicts))
    shared = sorted((k for k, v in writers.items() if k in last and len(v) > 1),
                    key=lambda k: (-len(writers[k]), k))
    shown = ("; ".join(f"{k} <- {_listed(writers[k])}" for k in shared[:8])
             + (f" (and {len(shared) - 8} more)" if len(shared) > 8 else "")
             if shared else "each last-value key has one writer")
    several = f"Last-value keys with several writers: {shown}"
    check = f"{path}state.reducers"
    title = "concurrent writers have reducers"
    if conflicts or crashed:
        said = conflicts + [f"a run failed: {crashed[0]}"] * bool(crashed)
        return Finding(id=check, area="state", title=title, status="fail",
                       evidence="; ".join(said) + (f". {several}" if shared else ""),
                       figure=len(conflicts) or len(crashed),
                       fix="give each key written by parallel nodes a reducer (Annotated[list, "
                           "operator.add], or a merge function), or let one node own it")
    if sent:
        groups.append(("as Send fan-out", set(sent)))
    if not groups:
        return Finding(id=check, area="state", title=title, status="pass",
                       evidence=f"no nodes ran in parallel in the probes' {len(runs)} "
                                f"requests and none are declared to. {several}", figure=0)
    if unknown:
        return Finding(id=check, area="state", title=title, status="n/a",
                       evidence=f"{_listed(unknown)} never ran in the probes, so what they "
                                f"write is unknown; among those that ran no two parallel "
                                f"nodes wrote one last-value key. {several}",
                       figure=len(unknown))
    parallel = "; ".join(f"{_listed(m)} {w}" for w, m in groups[:4])
    # Parallel nodes that write a last-value key at all: safe only while no sibling ever
    # writes it, which the probes' few inputs cannot show.
    code = {node: _code(builder, node) for _, members in groups for node in members}
    exposed = sorted({f"{node} writes {key} and {sibling}'s code names it"
                      for _, members in groups for node in members
                      for key in last if node in writers.get(key, set())
                      for sibling in members - {node}
                      if re.search(rf"[\"']{re.escape(key)}[\"']", code.get(sibling, ""))})
    if exposed:
        return Finding(id=check, area="state", title=title, status="warn",
                       evidence=f"in the probes' {len(runs)} requests, parallel nodes "
                                f"({parallel}) never wrote one last-value key twice in a step, "
                                f"but {'; '.join(exposed[:4])}: an input on which both write "
                                f"it in one step fails that step (InvalidUpdateError). "
                                f"{several}", figure=len(exposed),
                       fix="give the keys parallel nodes write a reducer, or let one node "
                           "own each")
    return Finding(id=check, area="state", title=title, status="pass",
                   evidence=f"in the probes' {len(runs)} requests, parallel nodes "
                            f"({parallel}) wrote only keys with reducers. {several}",
                   figure=0)


def _code(builder: StateGraph[Any, Any, Any, Any], node: str) -> str:
    """A node's source, as far as it can be read (empty if not)."""
    spec = builder.nodes.get(node)
    runnable = getattr(spec, "runnable", None)
    function = getattr(runnable, "afunc", None) or getattr(runnable, "func", None)
    try:
        return inspect.getsource(function) if function is not None else ""
    except (OSError, TypeError):
        return ""


def writers_findings(graph: Any, runs: Sequence[Run]) -> dict[str, Finding]:
    """Measured `state.reducers` findings by id, for the graph and its subgraphs."""
    found: dict[str, Finding] = {}
    for path, sub in graphs_by_path(graph).items():
        finding = _one(path, sub, runs)
        if finding is not None:
            found[finding.id] = finding
    return found
