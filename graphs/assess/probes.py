"""Fault probes: the assessed graph run against one failing or hanging dependency at a time.

Every outbound call is answered in-process and counted (`graphs.assess.intercept`), so
nothing leaves the machine. A dependency is taken down alone, the others answering as they do
in the healthy baseline (the model scripted): so a tool behind a model is reached, and only the
requests that needed it in the baseline are sent. Backoffs are counted, not waited for: node
retry policies are probed on a copy that barely waits (subgraphs' too), and the SDKs are told
to retry after a millisecond.

Amplification is measured per logical call: the same call sent again (same method, URL and
body) is a retry, and so is every call beyond what the same request made when all was well; a
fan-out to three URLs is three logical calls, not a retry storm.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from graphs.assess.intercept import Call, Hang, Intercepted, Outbound, Refused, Reply, intercepted
from graphs.assess.runs import Run, run_one, run_routes
from graphs.assess.scorecard import Finding, Status
from graphs.assess.scripted import healthy, is_model_call

__all__ = ["Target", "amplification_finding", "breaking_finding", "faulty", "hang_finding",
           "quick_retries", "refused", "session", "unavailable"]

Answer = Callable[[Outbound], Reply | Hang | Refused]
LONG_TIMEOUT_S = 60.0
"""A client timeout above this bounds nothing a user would wait for."""


def unavailable(call: Outbound) -> Reply:
    """A 503 the SDKs retry after a millisecond."""
    # `retry-after-ms` keeps the SDKs' backoff to a millisecond: their retries are counted,
    # not waited for (sleeps are never patched: timeouts are built on them too).
    return 503, {"error": {"message": "injected: service unavailable",
                           "type": "server_error"}}, {"retry-after-ms": "1"}


def refused(call: Outbound) -> Refused:
    """The connection refused: a dependency that is down, as a transport error."""
    return Refused()


def faulty(host: str | None, fault: Answer) -> Answer:
    """`fault` for `host` (every host, if None), the healthy answer for the others."""
    if host is None:
        return fault
    return lambda call: fault(call) if call.host == host else healthy(call)


@asynccontextmanager
async def session(box: Intercepted | None) -> AsyncIterator[Intercepted]:
    """`box`, or an interception session of its own for a probe run alone."""
    if box is not None:
        yield box
        return
    with intercepted() as own:
        try:
            yield own
        finally:
            await own.asettle()


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """One dependency to take down: the graph to run, the routes that need it, what's normal."""

    host: str
    """The dependency."""
    graph: Any
    """The graph to probe it on (loaded afresh where the target allows)."""
    routes: Sequence[int]
    """The routes whose requests called it in the healthy baseline."""
    inputs: Sequence[Any]
    """Their requests, in the same order."""
    healthy: Mapping[int, int] = field(default_factory=dict)
    """Calls each route made to it in the healthy baseline."""
    repeats: Mapping[int, int] = field(default_factory=dict)
    """Of those, calls that repeated an earlier one (a poll loop's): not retries."""
    before: int = 0
    """Calls an earlier probe made to it on this same graph object (breakers may be open)."""


def _in_nodes(calls: Sequence[Call], host: str) -> str:
    """` in node a, b`: the nodes that called `host` (empty when unknown)."""
    nodes = sorted({c.node for c in calls if c.host == host and c.node})
    return f" in node {', '.join(nodes)}" if nodes else ""


def _node_spec(graph: Any, path: str) -> Any:
    """The builder's spec of node `path` (`agent/tools`), if it can be found."""
    spec = None
    for part in path.split("/"):
        spec = getattr(getattr(graph, "builder", None), "nodes", {}).get(part)
        if spec is None:
            return None
        graph = spec.runnable
    return spec


def _retry_nodes(graph: Any, path: str) -> list[str]:
    """The nodes with a RetryPolicy on the way to node `path` (`agent/tools`)."""
    found: list[str] = []
    parts = path.split("/")
    for depth, part in enumerate(parts):
        spec = getattr(getattr(graph, "builder", None), "nodes", {}).get(part)
        if spec is None:
            break
        policy = spec.retry_policy
        if policy:
            attempts = max(getattr(p, "max_attempts", 1)
                           for p in ([policy] if hasattr(policy, "max_attempts") else policy))
            found.append(f"{'/'.join(parts[:depth + 1])} ({attempts} attempts)")
        graph = spec.runnable
    return found


def _async_node(graph: Any, path: str) -> bool:
    """Whether node `path` runs async code (a node `timeout` applies to those only)."""
    runnable = getattr(_node_spec(graph, path), "runnable", None)
    if getattr(runnable, "builder", None) is not None:
        return True  # a subgraph: LangGraph runs it async
    function = getattr(runnable, "func", None)
    if function is not None:
        return inspect.iscoroutinefunction(function)
    return getattr(runnable, "afunc", None) is not None


def quick_retries(graph: Any) -> Any:
    """A copy of `graph` whose node retry policies (subgraphs' too) barely wait."""
    nodes = {}
    for name, node in graph.nodes.items():
        policy = getattr(node, "retry_policy", None)
        if policy:
            single = hasattr(policy, "max_attempts")
            fast = [p._replace(initial_interval=0.001, max_interval=0.001, jitter=False)
                    for p in ([policy] if single else policy)]
            node = node.copy({"retry_policy": fast[0] if single else type(policy)(fast)})
        bound = getattr(node, "bound", None)
        if getattr(bound, "nodes", None) is not None and hasattr(bound, "copy"):
            quick = quick_retries(bound)
            node = node.copy({"bound": quick, "subgraphs": [quick]})
        nodes[name] = node
    return graph.copy(update={"nodes": nodes})


@dataclass(frozen=True, slots=True, kw_only=True)
class _Amplified:
    host: str
    requests: int
    calls: int
    firsts: int
    logical: int
    per_request: tuple[float, ...]
    counts: tuple[int, ...]
    calls_seen: tuple[Call, ...]

    @property
    def worst(self) -> float:
        return max(self.per_request, default=0.0)

    @property
    def mean(self) -> float:
        return sum(self.per_request) / len(self.per_request) if self.per_request else 0.0


def _amplified(host: str, runs: Sequence[Run], healthy_calls: Mapping[int, int],
               repeats: Mapping[int, int] | None = None) -> _Amplified | None:
    per, counts, firsts, logical, seen = [], [], 0, 0, []
    for run in runs:
        mine = [c for c in run.calls if c.host == host]
        if not mine:
            continue
        distinct = len({c.digest for c in mine})
        normal = healthy_calls.get(run.route, 0)
        again = len(mine) - (repeats or {}).get(run.route, 0)
        # The same call sent again (beyond what the request repeated when all was well: a
        # poll), or more calls than the same request sent when all was well.
        per.append(max(max(again, distinct) / distinct, len(mine) / normal if normal else 0.0))
        counts.append(len(mine))
        firsts += sum(1 for c in mine if c.sdk_retry == 0)
        logical += distinct
        seen.extend(mine)
    if not counts:
        return None
    return _Amplified(host=host, requests=len(counts), calls=sum(counts), firsts=firsts,
                      logical=logical, per_request=tuple(per), counts=tuple(counts),
                      calls_seen=tuple(seen))


def _worse(found: Sequence[_Amplified]) -> list[_Amplified]:
    """Per host, the worse of its measurements (503 or refused), in first-seen order."""
    best: dict[str, _Amplified] = {}
    for one in found:
        if one.host not in best or one.worst > best[one.host].worst:
            best[one.host] = one
    return list(best.values())


def _amplification_fix(graph: Any, found: Sequence[_Amplified]) -> str:
    """The changes that leave one retry layer: named clients and nodes."""
    changes: list[str] = []
    for a in found:
        if a.worst <= 2:
            continue
        where = _in_nodes(a.calls_seen, a.host)
        if a.calls > a.firsts:
            model = any(is_model_call(c.path) for c in a.calls_seen)
            changes.append(f"set max_retries=0 on the client that calls {a.host}{where}"
                           + (" (ChatOpenAI(max_retries=0), or the OpenAI client's own)"
                              if model else ""))
        policies = sorted({n for c in a.calls_seen if c.node
                           for n in _retry_nodes(graph, c.node)})
        if policies:
            changes.append(f"remove the RetryPolicy of node {', '.join(policies)}")
        if a.firsts > a.logical and not policies:
            changes.append(f"remove the retry loop around the calls to {a.host}{where} (the "
                           f"node's own code or its tool's: tenacity, a for loop, polling)")
    return ("; ".join(dict.fromkeys(changes)) + "; then keep one retry layer, with a budget "
            "and a breaker") if changes else ""


async def _runs_on(target: Target | None, graph: Any, inputs: Sequence[Any], box: Intercepted,
                   tag: str, fault: Answer, timeout_s: float, count: int) -> list[Run]:
    if target is None:
        routes = list(range(len(inputs)))
        async with box.phase(fault):
            return await run_routes(graph, list(inputs), routes, box, tag, timeout_s=timeout_s)
    routes = [target.routes[n % len(target.routes)] for n in range(count)]
    given = [target.inputs[n % len(target.inputs)] for n in range(count)]
    async with box.phase(faulty(target.host, fault)):
        return await run_routes(target.graph, given, routes, box, tag, timeout_s=timeout_s)


async def amplification_finding(graph: Any, inputs: list[Any], *, prefix: str = "",
                                timeout_s: float = 30.0,
                                measured: dict[str, Any] | None = None,
                                box: Intercepted | None = None,
                                targets: Sequence[Target] | None = None) -> Finding:
    """Retry amplification: a dependency failing every call (503); calls per logical call.

    With `targets`, each dependency is taken down alone, on its own graph, with the requests
    that needed it; without, every dependency fails at once. `measured`, if given, gets the
    figures behind the finding (for charts).
    """
    found: list[_Amplified] = []
    blocked = 0
    async with session(box) as live:
        # Down two ways: answering 503, and refusing the connection (some clients and loops
        # retry only one of them); the worse counts.
        for fault in (unavailable, refused):
            if targets:
                for target in targets:
                    runs = await _runs_on(target, graph, inputs, live, "amplification",
                                          fault, timeout_s, len(inputs))
                    if (one := _amplified(target.host, runs, target.healthy,
                                          target.repeats)) is not None:
                        found.append(one)
            else:
                runs = await _runs_on(None, graph, inputs, live, "amplification", fault,
                                      timeout_s, len(inputs))
                for host in dict.fromkeys(c.host for r in runs for c in r.calls):
                    if (one := _amplified(host, runs, {})) is not None:
                        found.append(one)
        found = _worse(found)
        blocked = live.blocked
    check = f"{prefix}resilience.amplification"
    title = "retry amplification under a failing dependency"
    if measured is not None:
        measured[check] = {
            "calls_per_request": [n for a in found for n in a.counts],
            "first_attempts": sum(a.firsts for a in found),
            "sdk_retries": sum(a.calls - a.firsts for a in found),
            "hosts": {a.host: a.calls for a in found},
            "by_host": {a.host: {"calls_per_request": list(a.counts),
                                 "per_logical_call": [round(p, 2) for p in a.per_request],
                                 "mean": round(a.mean, 2), "worst": round(a.worst, 2),
                                 "sdk_retries": a.calls - a.firsts, "first_attempts": a.firsts,
                                 "logical_calls": a.logical} for a in found}}
    stopped = (f"; {blocked} connections outside httpx and requests were stopped and not "
               f"counted" if blocked else "")
    if not found:
        return Finding(id=check, area="resilience", title=title, status="n/a",
                       evidence=f"{len(inputs)} requests made no outbound HTTP call: nothing "
                                f"to amplify{stopped}", figure=0)
    said = []
    for a in sorted(found, key=lambda a: -a.worst):
        sdk = a.calls / max(a.firsts, 1)
        said.append(f"{a.host}: {a.calls} calls for {a.logical} logical calls in {a.requests} "
                    f"requests ({a.mean:.1f} per logical call, at most {a.worst:.1f}): "
                    f"{a.mean / sdk:.1f} first attempts per logical call (the graph's own "
                    f"tries: node retry policies, framework loops) x {sdk:.1f} attempts each "
                    f"by the SDK")
    worst = max(a.worst for a in found)
    # One attempt per logical call is no retry; two, one retry; beyond that a failing
    # dependency is being flooded (three and four: one layer of retries; more: layers
    # multiplying).
    status: Status = "pass" if worst <= 2 else ("warn" if worst <= 4 else "fail")
    return Finding(id=check, area="resilience", title=title, status=status,
                   evidence=("each dependency failing every call (503, then connection "
                             "refused) in turn, the others up" if targets else
                             "every dependency failing every call (503, then connection "
                             "refused)")
                   + f"; {'; '.join(said)}{stopped}",
                   figure=round(max(a.mean for a in found), 2),
                   fix="" if status == "pass" else _amplification_fix(
                       targets[0].graph if targets else graph, found))


def _stopped(counts: Sequence[int]) -> int | None:
    """From which request on none called, if that covers the last quarter of the run."""
    stopped_at = next((n for n in range(len(counts)) if not any(counts[n:])), None)
    if stopped_at is not None and len(counts) - stopped_at < max(2, len(counts) // 4):
        return None
    return stopped_at


async def breaking_finding(graph: Any, inputs: list[Any], *, prefix: str = "",
                           timeout_s: float = 30.0, called_before: int = 0,
                           measured: dict[str, Any] | None = None,
                           box: Intercepted | None = None,
                           targets: Sequence[Target] | None = None,
                           requests: int = 20) -> Finding:
    """Circuit breaking: with a dependency down, calls stop after a bound, or go on.

    With `targets`, each dependency is taken down alone and sent `requests` requests that need
    it; without, `inputs` run against every dependency failing. `called_before`: calls an
    earlier probe of the same graph made (its breakers may be open).
    """
    per_host: dict[str, list[int]] = {}
    before: dict[str, int] = {}
    nodes: dict[str, str] = {}
    async with session(box) as live:
        if targets:
            for target in targets:
                runs = await _runs_on(target, graph, inputs, live, "breaking", unavailable,
                                      timeout_s, requests)
                per_host[target.host] = [sum(1 for c in r.calls if c.host == target.host)
                                         for r in runs]
                before[target.host] = target.before
                nodes[target.host] = _in_nodes([c for r in runs for c in r.calls],
                                               target.host)
        else:
            runs = await _runs_on(None, graph, inputs, live, "breaking", unavailable,
                                  timeout_s, len(inputs))
            per_host["every dependency"] = [len(r.calls) for r in runs]
            before["every dependency"] = called_before
            every = [c for r in runs for c in r.calls]
            nodes["every dependency"] = "; ".join(
                f"{h}{_in_nodes(every, h)}" for h in sorted({c.host for c in every}))
    check, title = f"{prefix}resilience.breaking", "calls to a failing dependency stop"
    if measured is not None:
        series = next(iter(per_host.values()), [])
        measured[check] = {"calls_per_request": max(per_host.values(), key=sum, default=series),
                           "called_before": sum(before.values()),
                           "by_host": {h: list(c) for h, c in per_host.items()}}
    if not per_host or not any(any(c) for c in per_host.values()):
        if any(before.values()):
            return Finding(id=check, area="resilience", title=title, status="pass",
                           evidence=f"the failing dependencies were called "
                                    f"{sum(before.values())} times by the amplification "
                                    f"probe, then not once: the calls had stopped", figure=0)
        return Finding(id=check, area="resilience", title=title, status="n/a",
                       evidence=f"{sum(len(c) for c in per_host.values()) or len(inputs)} "
                                f"requests made no outbound HTTP call", figure=0)
    said, still_calling, worst = [], [], 0
    status: Status = "pass"
    for host, counts in per_host.items():
        shown = ", ".join(str(c) for c in counts)
        stopped_at = _stopped(counts)
        if stopped_at is not None:
            said.append(f"{host}: calls per request, in order: {shown}: after request "
                        f"{stopped_at} no call reached it")
            continue
        tail = counts[len(counts) // 2:]
        still = sum(1 for c in tail if c)
        worst = max(worst, still)
        said.append(f"{host}: calls per request, in order: {shown}: {still} of the last "
                    f"{len(tail)} requests still called it, though it failed every call")
        still_calling.append(host)
        status = "fail" if still == len(tail) or status == "fail" else "warn"
    if status == "pass":
        first = max((_stopped(c) or 0) for c in per_host.values())
        return Finding(id=check, area="resilience", title=title, status="pass",
                       evidence="; ".join(said), figure=first)
    return Finding(id=check, area="resilience", title=title, status=status,
                   evidence="; ".join(said), figure=worst,
                   fix="; ".join(f"put a circuit breaker around the calls to {h}"
                                 f"{nodes.get(h, '')} (pybreaker, or Interlock's governor)"
                                 for h in still_calling)
                   + ", so that once it is down requests fail fast instead of calling it again")


def _deadline_fix(graph: Any, hung: Sequence[Call]) -> str:
    """Timeouts on the clients and nodes whose calls were still hanging."""
    parts = []
    for host in sorted({c.host for c in hung}):
        mine = [c for c in hung if c.host == host]
        slowest = [c.timeout_s for c in mine]
        now = ("none" if any(t is None for t in slowest)
               else f"{max(t for t in slowest if t is not None):g} s")
        model = any(is_model_call(c.path) for c in mine)
        client = ("ChatOpenAI(timeout=...), or the OpenAI client's own" if model else
                  "requests.get(..., timeout=...)" if mine[0].client == "requests" else
                  "httpx.Client(timeout=...)" if mine[0].sync else
                  "httpx.AsyncClient(timeout=...)")
        parts.append(f"give the client that calls {host}{_in_nodes(mine, host)} a timeout "
                     f"of a few seconds ({client}; now: {now})")
    asynchronous = sorted({c.node for c in hung if c.node and _async_node(graph, c.node)})
    tail = (f", or set timeout= on node {', '.join(asynchronous)}" if asynchronous else "")
    return "; ".join(parts) + "; and give the request a deadline" + tail


_HANGING: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "interlock_assess_hanging", default=None)
"""The dependency the probe request in progress has hanging (None: every one)."""


def _hangs(call: Outbound) -> Reply | Hang:
    """The request's own dependency hangs (every one, when it names none); the rest is up."""
    host = _HANGING.get()
    if host is None or call.host == host:
        return Hang(LONG_TIMEOUT_S * 10, then=unavailable(call))
    return healthy(call)


async def _hung(graph: Any, given: Any, box: Intercepted, *, route: int, host: str | None,
                cap_s: float) -> Run:
    _HANGING.set(host)  # this task's own context: inherited by what the run starts
    return await run_one(graph, given, box, route=route, tag="hang", timeout_s=cap_s)


async def hang_finding(graph: Any, inputs: list[Any], *, prefix: str = "",
                       cap_s: float = 10.0, measured: dict[str, Any] | None = None,
                       box: Intercepted | None = None,
                       routes: Sequence[int] | None = None,
                       hosts: Sequence[str | None] | None = None) -> Finding:
    """Timeouts and deadlines: a dependency hangs; how long until a request comes back.

    `hosts[n]` is the dependency request `n` has hanging, the others answering as when all
    is well (so a tool behind a model is reached); None, or no `hosts`: every dependency.
    """
    chosen = list(routes) if routes is not None else list(range(len(inputs)))
    hanging = list(hosts) if hosts is not None else [None] * len(inputs)
    async with session(box) as live, live.phase(_hangs):
        # Side by side: each waits for its own hung calls, not for the others'.
        done = list(await asyncio.gather(*(
            asyncio.create_task(_hung(graph, given, live, route=route, host=host,
                                      cap_s=cap_s))
            for given, route, host in zip(inputs, chosen, hanging, strict=True))))
    if measured is not None:
        measured[f"{prefix}resilience.deadlines"] = {
            "seconds": [r.seconds for r in done], "cap_s": cap_s,
            "hanging": [h or "every dependency" for h in hanging]}
    check, title = f"{prefix}resilience.deadlines", "a hanging dependency is cut off"
    if not any(r.calls for r in done) and all(r.seconds is not None for r in done):
        return Finding(id=check, area="resilience", title=title, status="n/a",
                       evidence=f"{len(inputs)} requests made no outbound HTTP call",
                       figure=0)
    said, hung_all = [], []
    status: Status = "pass"
    for run, host in zip(done, hanging, strict=True):
        what = f"{host} hanging" if host else "every dependency hanging"
        if run.seconds is not None:
            said.append(f"{what}: back within {run.seconds:.2f} s")
            continue
        hung = [c for c in run.calls if host is None or c.host == host]
        hung_all.extend(hung)
        limits = sorted({f"{c.timeout_s:g} s" if c.timeout_s is not None else "none"
                         for c in hung})
        unbounded = [c for c in hung if c.timeout_s is None or c.timeout_s > LONG_TIMEOUT_S]
        if unbounded or not hung:
            status = "fail"
            said.append(f"{what}: not back after {cap_s:g} s (the probe's cap); " + (
                f"its calls had client timeouts of {', '.join(limits)}" if hung else
                "no call was hanging: the graph itself did not come back"))
        else:
            status = "warn" if status == "pass" else status
            said.append(f"{what}: not back after {cap_s:g} s; every call was bounded "
                        f"({', '.join(limits)}), but {len(hung)} of them (retries included) "
                        f"add up past the cap (raise --hang-cap to see when it comes back)")
    worst = max((r.seconds if r.seconds is not None else cap_s) for r in done)
    return Finding(id=check, area="resilience", title=title, status=status,
                   evidence="; ".join(said), figure=round(worst, 2),
                   fix="" if status == "pass" else _deadline_fix(graph, hung_all))
