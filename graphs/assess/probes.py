"""Fault probes: small runs of the assessed graph against failing or hanging dependencies.

Every outbound call is answered in-process and counted (`graphs.assess.intercept`), so
nothing leaves the machine. Backoffs are counted, not waited for: node retry policies are
probed on a copy that barely waits, and the SDKs are told to retry after a millisecond.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any

from graphs.assess.intercept import Call, Hang, Outbound, Reply, intercepted
from graphs.assess.runs import Run, run_each, run_one
from graphs.assess.scorecard import Finding, Status
from graphs.assess.scripted import is_model_call

__all__ = ["amplification_finding", "breaking_finding", "hang_finding", "quick_retries",
           "unavailable"]


def unavailable(call: Outbound) -> Reply:
    """A 503 the SDKs retry after a millisecond."""
    # `retry-after-ms` keeps the SDKs' backoff to a millisecond: their retries are counted,
    # not waited for (sleeps are never patched: timeouts are built on them too).
    return 503, {"error": {"message": "injected: service unavailable",
                           "type": "server_error"}}, {"retry-after-ms": "1"}


def _in_nodes(calls: Sequence[Call], host: str) -> str:
    """` in node a, b`: the nodes that called `host` (empty when unknown)."""
    nodes = sorted({c.node for c in calls if c.host == host and c.node})
    return f" in node {', '.join(nodes)}" if nodes else ""


def _retry_nodes(graph: Any, path: str) -> list[str]:
    """The nodes with a RetryPolicy on the way to node `path` (`agent/tools`)."""
    found: list[str] = []
    parts = path.split("/")
    for depth, part in enumerate(parts):
        builder = getattr(graph, "builder", None)
        spec = getattr(builder, "nodes", {}).get(part)
        if spec is None:
            break
        policy = spec.retry_policy
        if policy:
            attempts = max(getattr(p, "max_attempts", 1)
                           for p in ([policy] if hasattr(policy, "max_attempts") else policy))
            found.append(f"{'/'.join(parts[:depth + 1])} ({attempts} attempts)")
        graph = spec.runnable
    return found


def _amplification_fix(graph: Any, calls: Sequence[Call],
                       by_host: dict[str, dict[str, Any]]) -> str:
    """The changes that leave one retry layer: named clients and nodes."""
    changes: list[str] = []
    for host, figures in by_host.items():
        if figures["worst"] <= 2:
            continue
        where = _in_nodes(calls, host)
        if figures["sdk_retries"]:
            model = any(is_model_call(c.path) for c in calls if c.host == host)
            changes.append(f"set max_retries=0 on the client that calls {host}{where}"
                           + (" (ChatOpenAI(max_retries=0))" if model else ""))
        policies = sorted({n for c in calls if c.host == host and c.node
                           for n in _retry_nodes(graph, c.node)})
        if policies:
            changes.append(f"remove the RetryPolicy of node {', '.join(policies)}")
        if not figures["sdk_retries"] and not policies:
            changes.append(f"retry the calls to {host}{where} at most once, from a retry "
                           f"budget shared by every request")
    return ("; ".join(dict.fromkeys(changes)) + "; then keep one retry layer, with a budget "
            "and a breaker") if changes else ""


def _deadline_fix(hung: Sequence[Call]) -> str:
    """Timeouts on the clients and nodes whose calls were still hanging."""
    hosts = sorted({c.host for c in hung})
    nodes = sorted({c.node for c in hung if c.node})
    named = "; ".join(f"give the client that calls {host}{_in_nodes(hung, host)} a timeout"
                      + (" (ChatOpenAI(timeout=...))" if any(
                          is_model_call(c.path) for c in hung if c.host == host)
                         else " (httpx.AsyncClient(timeout=...))") for host in hosts)
    return ((named + "; " if named else "give every client a timeout; ")
            + "give the request a deadline"
            + (f", or set timeout= on node {', '.join(nodes)}" if nodes else
               ", or set timeout= on the nodes that call out"))


def quick_retries(graph: Any) -> Any:
    """A copy of `graph` whose node retry policies keep their attempts but barely wait."""
    nodes = {}
    for name, node in graph.nodes.items():
        policy = getattr(node, "retry_policy", None)
        if policy:
            single = hasattr(policy, "max_attempts")
            fast = [p._replace(initial_interval=0.001, max_interval=0.001, jitter=False)
                    for p in ([policy] if single else policy)]
            node = node.copy({"retry_policy": fast[0] if single else type(policy)(fast)})
        nodes[name] = node
    return graph.copy(update={"nodes": nodes})


async def _run_each(graph: Any, inputs: list[Any], tag: str, *, timeout_s: float,
                    hang_s: float | None = None) -> tuple[list[Run], int]:
    """Run each input against failing dependencies in turn (hanging ones: side by side).

    Returns each request's run, and how many non-httpx connections were stopped.
    """
    def hang(call: Outbound) -> Reply | Hang:
        return Hang(float(hang_s or 0), then=unavailable(call))

    with intercepted(unavailable if hang_s is None else hang) as box:
        if hang_s is None:
            runs = await run_each(graph, inputs, box, tag, timeout_s=timeout_s)
        else:  # side by side: each waits for its own hung calls, not for the others'
            runs = list(await asyncio.gather(*(
                run_one(graph, given, box, route=n, tag=tag, timeout_s=timeout_s)
                for n, given in enumerate(inputs))))
    return runs, box.blocked


async def amplification_finding(graph: Any, inputs: list[Any], *, prefix: str = "",
                                timeout_s: float = 30.0,
                                measured: dict[str, Any] | None = None) -> Finding:
    """Retry amplification: every dependency fails (503); the calls each request makes.

    `measured`, if given, gets the figures behind the finding (for charts).
    """
    done, blocked = await _run_each(graph, inputs, "amplification", timeout_s=timeout_s)
    calls = [c for r in done for c in r.calls]
    hosts = Counter(c.host for c in calls)
    # Per dependency: a request that calls two dependencies once each amplifies nothing.
    by_host: dict[str, dict[str, Any]] = {}
    for host in hosts:
        counts = [n for r in done if (n := sum(1 for c in r.calls if c.host == host))]
        retried = sum(1 for c in calls if c.host == host and c.sdk_retry > 0)
        by_host[host] = {"calls_per_request": counts, "sdk_retries": retried,
                         "per_request": [sum(1 for c in r.calls if c.host == host)
                                         for r in done],
                         "first_attempts": sum(counts) - retried,
                         "mean": sum(counts) / len(counts), "worst": max(counts)}
    if measured is not None:
        measured[f"{prefix}resilience.amplification"] = {
            "calls_per_request": [len(r.calls) for r in done],
            "first_attempts": sum(h["first_attempts"] for h in by_host.values()),
            "sdk_retries": sum(h["sdk_retries"] for h in by_host.values()),
            "hosts": dict(hosts), "by_host": by_host}
    runs = len(inputs)
    stopped = (f"; {blocked} connections outside httpx were stopped and not counted"
               if blocked else "")
    if not hosts:
        return Finding(id=f"{prefix}resilience.amplification", area="resilience",
                       title="retry amplification under a failing dependency", status="n/a",
                       evidence=f"{runs} requests made no outbound HTTP call: nothing to "
                                f"amplify{stopped}",
                       figure=0)
    said = []
    for host, h in sorted(by_host.items(), key=lambda kv: -kv[1]["mean"]):
        logical = len(h["calls_per_request"])
        said.append(f"{host}: {sum(h['calls_per_request'])} calls from {logical} requests "
                    f"({h['mean']:.1f} per request, at most {h['worst']}): "
                    f"{h['first_attempts'] / logical:.1f} first attempts per request (the "
                    f"graph's own tries: node retry policies, framework loops) x "
                    f"{1 + h['sdk_retries'] / max(h['first_attempts'], 1):.1f} attempts each "
                    f"by the SDK")
    worst = max(h["worst"] for h in by_host.values())
    mean = max(h["mean"] for h in by_host.values())
    # One call per request is no retry; two, one retry; beyond that a failing dependency is
    # being flooded (three and four: one layer of retries; more: layers multiplying).
    status: Status = "pass" if worst <= 2 else ("warn" if worst <= 4 else "fail")
    return Finding(
        id=f"{prefix}resilience.amplification", area="resilience",
        title="retry amplification under a failing dependency", status=status,
        evidence=f"{runs} requests against dependencies failing every call (503); calls per "
                 f"request that needed each: {'; '.join(said)}{stopped}",
        figure=round(mean, 2),
        fix="" if status == "pass" else _amplification_fix(graph, calls, by_host))


async def breaking_finding(graph: Any, inputs: list[Any], *, prefix: str = "",
                           timeout_s: float = 30.0, called_before: int = 0,
                           measured: dict[str, Any] | None = None) -> Finding:
    """Circuit breaking: with a dependency down, calls stop after a bound, or go on.

    `called_before`: calls an earlier probe of the same graph made (its breakers may be open).
    """
    done, _ = await _run_each(graph, inputs, "breaking", timeout_s=timeout_s)
    counts = [len(r.calls) for r in done]
    calls = [c for r in done for c in r.calls]
    if measured is not None:
        measured[f"{prefix}resilience.breaking"] = {"calls_per_request": counts,
                                                    "called_before": called_before}
    check = f"{prefix}resilience.breaking"
    title = "calls to a failing dependency stop"
    if not any(counts) and called_before:
        return Finding(id=check, area="resilience", title=title, status="pass",
                       evidence=f"the failing dependencies were called {called_before} times "
                                f"by the amplification probe, then not once in {len(counts)} "
                                f"requests: the calls had stopped", figure=0)
    if not any(counts):
        return Finding(id=check, area="resilience", title=title, status="n/a",
                       evidence=f"{len(counts)} requests made no outbound HTTP call", figure=0)
    tail = counts[len(counts) // 2:]
    still = sum(1 for c in tail if c)
    # Stopped: from some request on, none called it, for the last quarter of the run at least.
    stopped_at = next((n for n in range(len(counts)) if not any(counts[n:])), None)
    if stopped_at is not None and len(counts) - stopped_at < max(2, len(counts) // 4):
        stopped_at = None
    shown = ", ".join(str(c) for c in counts)
    if stopped_at is not None:
        return Finding(id=check, area="resilience", title=title, status="pass",
                       evidence=f"calls per request, in order: {shown}: after request "
                                f"{stopped_at} no call reached the failing dependency",
                       figure=stopped_at)
    return Finding(id=check, area="resilience", title=title,
                   status="fail" if still == len(tail) else "warn",
                   evidence=f"calls per request, in order: {shown}: {still} of the last "
                            f"{len(tail)} requests still called the dependency that failed "
                            f"every call", figure=still,
                   fix="; ".join(
                       f"put a circuit breaker around the calls to {host}{_in_nodes(calls, host)} "
                       f"(pybreaker, or Interlock's governor)"
                       for host in sorted({c.host for c in calls}))
                   + ", so that once it is down requests fail fast instead of calling it again")


async def hang_finding(graph: Any, inputs: list[Any], *, prefix: str = "",
                       cap_s: float = 10.0, measured: dict[str, Any] | None = None) -> Finding:
    """Timeouts and deadlines: every dependency hangs; how long until a request comes back."""
    done, _ = await _run_each(graph, inputs, "hang", timeout_s=cap_s, hang_s=cap_s + 5)
    took = [float("inf") if r.seconds is None else r.seconds for r in done]
    if measured is not None:
        measured[f"{prefix}resilience.deadlines"] = {
            "seconds": [r.seconds for r in done], "cap_s": cap_s}
    calls = sum(len(r.calls) for r in done)
    check, title = f"{prefix}resilience.deadlines", "a hanging dependency is cut off"
    if not calls and all(t != float("inf") for t in took):
        return Finding(id=check, area="resilience", title=title, status="n/a",
                       evidence=f"{len(inputs)} requests made no outbound HTTP call (after "
                                f"the other probes: a breaker they opened stops calls too)",
                       figure=0)
    stuck = sum(1 for t in took if t == float("inf"))
    worst = max((t for t in took if t != float("inf")), default=0.0)
    if stuck:
        return Finding(id=check, area="resilience", title=title, status="fail",
                       evidence=f"with every dependency hanging, {stuck} of {len(took)} "
                                f"requests had not come back after {cap_s:g} s (the probe's "
                                f"cap)", figure=cap_s,
                       fix=_deadline_fix([c for r in done if r.seconds is None
                                          for c in r.calls]))
    return Finding(id=check, area="resilience", title=title, status="pass",
                   evidence=f"with every dependency hanging, every request came back within "
                            f"{worst:.2f} s", figure=round(worst, 2))
