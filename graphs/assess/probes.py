"""Probes: small runs of the assessed graph against injected faults, with every call counted.

Every outbound HTTP call the graph makes through httpx (the OpenAI and Anthropic SDKs, most
tool clients) is answered in-process by `Intercepted` and counted per host, so nothing leaves
the machine. Backoffs are counted, not waited for: node retry policies are probed on a copy
that barely waits, and the SDKs are told to retry after a millisecond.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from graphs.assess.scorecard import Finding, Status

__all__ = ["Call", "Intercepted", "amplification_finding", "breaking_finding", "hang_finding",
           "intercepted", "quick_retries"]

_RETRY_HEADER = "x-stainless-retry-count"
"""Set by the OpenAI and Anthropic SDKs on every attempt: 0 on a first try, n on a retry."""


@dataclass(slots=True)
class Call:
    """One outbound call the graph made."""

    host: str
    """Where it was going."""
    path: str
    """The URL path."""
    sdk_retry: int
    """The SDK's own retry number (0: a first attempt, or a client that does not say)."""


Reply = tuple[int, dict[str, Any], dict[str, str]]
"""How a call is answered: status, JSON body, headers."""


@dataclass(slots=True)
class Intercepted:
    """What the graph sent while intercepted."""

    answer: Callable[[str, str], Reply]
    """How every call is answered, from its method and URL."""
    calls: list[Call] = field(default_factory=list)
    """Every call, in order."""
    blocked: int = 0
    """Connections stopped that did not go through httpx."""

    def handle(self, request: Any) -> Reply:
        """Count the call and answer it."""
        retry = request.headers.get(_RETRY_HEADER, "0")
        self.calls.append(Call(host=request.url.host, path=request.url.path,
                               sdk_retry=int(retry) if retry.isdigit() else 0))
        return self.answer(request.method, str(request.url))


def _clients() -> list[Any]:
    """The httpx packages in this process (the OpenAI SDK uses `httpx2`, most tools `httpx`)."""
    found = [httpx]
    try:
        import httpx2  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return found
    return [*found, httpx2]


@contextmanager
def intercepted(answer: Callable[[str, str], Reply], *,
                hang_s: float | None = None) -> Iterator[Intercepted]:
    """Answer every httpx call in-process with `answer`, while inside.

    With `hang_s`, every async call hangs that long first, or until the client's own read
    timeout (which then fires as it would on the wire: a `ReadTimeout`).
    """
    box = Intercepted(answer=answer)
    saved: list[tuple[Any, str, Any]] = []
    real_sleep = asyncio.sleep

    def patch(owner: Any, name: str, value: Any) -> None:
        saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    for module in _clients():
        def reply(request: Any, module: Any = module) -> Any:
            status, body, headers = box.handle(request)
            return module.Response(status, json=body, headers=headers, request=request)

        async def handle_async(self: Any, request: Any, reply: Any = reply,
                               module: Any = module) -> Any:
            await request.aread()
            if hang_s is None:
                return reply(request)
            status, body, headers = box.handle(request)  # counted before it hangs
            read = (request.extensions.get("timeout") or {}).get("read")
            await real_sleep(hang_s if read is None else min(hang_s, read))
            if read is not None and read <= hang_s:
                raise module.ReadTimeout("interlock assess: the dependency hangs",
                                         request=request)
            return module.Response(status, json=body, headers=headers, request=request)

        def handle_sync(self: Any, request: Any, reply: Any = reply) -> Any:
            request.read()
            return reply(request)

        patch(module.AsyncHTTPTransport, "handle_async_request", handle_async)
        patch(module.HTTPTransport, "handle_request", handle_sync)

    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        # Anything that does not go through httpx (requests, aiohttp, raw sockets) is stopped
        # here: nothing the probed graph does leaves the machine.
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host in ("127.0.0.1", "::1", "localhost"):
            return real_connect(self, address)
        box.blocked += 1
        raise ConnectionRefusedError(f"interlock assess: no network ({host})")

    patch(socket.socket, "connect", connect)
    try:
        yield box
    finally:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)


def _unavailable(method: str, url: str) -> Reply:
    # `retry-after-ms` keeps the SDKs' backoff to a millisecond: their retries are counted,
    # not waited for (sleeps are never patched: timeouts are built on them too).
    return 503, {"error": {"message": "injected: service unavailable",
                           "type": "server_error"}}, {"retry-after-ms": "1"}


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


@dataclass(slots=True)
class _Run:
    """One probe request: the calls it made, and how long it took (None: not back in time)."""

    calls: list[Call]
    seconds: float | None


async def _run_each(graph: Any, inputs: list[Any], tag: str, *, timeout_s: float,
                    hang_s: float | None = None) -> tuple[list[_Run], int]:
    """Run each input against failing (or, with `hang_s`, hanging) dependencies, in turn.

    Returns each request's calls and time, and how many non-httpx connections were stopped.
    """
    runs: list[_Run] = []
    with intercepted(_unavailable, hang_s=hang_s) as box:
        for n, given in enumerate(inputs):
            before, started = len(box.calls), time.perf_counter()
            config = {"configurable": {"thread_id": f"assess-{tag}-{n}"}, "recursion_limit": 50}
            seconds: float | None
            try:
                await asyncio.wait_for(graph.ainvoke(given, config), timeout_s)
            except TimeoutError:
                seconds = None
            except Exception:  # a failing run is what the probes provoke; it came back
                seconds = time.perf_counter() - started
            else:
                seconds = time.perf_counter() - started
            runs.append(_Run(calls=box.calls[before:], seconds=seconds))
    return runs, box.blocked


async def amplification_finding(graph: Any, inputs: list[Any], *, prefix: str = "",
                                timeout_s: float = 30.0) -> Finding:
    """Retry amplification: every dependency fails (503); the calls each request makes."""
    done, blocked = await _run_each(graph, inputs, "amplification", timeout_s=timeout_s)
    per_request = [len(r.calls) for r in done]
    calls = [c for r in done for c in r.calls]
    sdk_retries = sum(1 for c in calls if c.sdk_retry > 0)
    firsts = len(calls) - sdk_retries
    hosts = Counter(c.host for c in calls)
    runs = len(inputs)
    stopped = (f"; {blocked} connections outside httpx were stopped and not counted"
               if blocked else "")
    if not hosts:
        return Finding(id=f"{prefix}resilience.amplification", area="resilience",
                       title="retry amplification under a failing dependency", status="n/a",
                       evidence=f"{runs} requests made no outbound HTTP call: nothing to "
                                f"amplify{stopped}",
                       figure=0)
    worst = max(per_request)
    mean = sum(per_request) / runs
    layers = (f"{firsts / runs:.1f} first attempts per request (the graph's own tries: node "
              f"retry policies, framework loops) x {1 + sdk_retries / max(firsts, 1):.1f} "
              f"attempts each by the SDK")
    # One call per request is no retry; two, one retry; beyond that a failing dependency is
    # being flooded (three and four: one layer of retries; more: layers multiplying).
    status: Status = "pass" if worst <= 2 else ("warn" if worst <= 4 else "fail")
    return Finding(
        id=f"{prefix}resilience.amplification", area="resilience",
        title="retry amplification under a failing dependency", status=status,
        evidence=f"{runs} requests against dependencies failing every call (503) made "
                 f"{sum(per_request)} calls ({mean:.1f} per request, at most {worst}) to "
                 f"{', '.join(f'{h} ({c})' for h, c in hosts.most_common())}: {layers}"
                 f"{stopped}",
        figure=round(mean, 2),
        fix="" if status == "pass" else
            "retry in one place: set max_retries=0 on the model and HTTP clients, drop node "
            "RetryPolicy on the nodes that call them, and give the one remaining retry layer a "
            "budget and a breaker")


async def breaking_finding(graph: Any, inputs: list[Any], *, prefix: str = "",
                           timeout_s: float = 30.0, called_before: int = 0) -> Finding:
    """Circuit breaking: with a dependency down, calls stop after a bound, or go on.

    `called_before`: calls an earlier probe of the same graph made (its breakers may be open).
    """
    done, _ = await _run_each(graph, inputs, "breaking", timeout_s=timeout_s)
    counts = [len(r.calls) for r in done]
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
                   fix="put a circuit breaker around the dependency's client (pybreaker, or "
                       "Interlock's governor), so that once it is down requests fail fast "
                       "instead of calling it again")


async def hang_finding(graph: Any, inputs: list[Any], *, prefix: str = "",
                       cap_s: float = 10.0) -> Finding:
    """Timeouts and deadlines: every dependency hangs; how long until a request comes back."""
    done, _ = await _run_each(graph, inputs, "hang", timeout_s=cap_s, hang_s=cap_s + 5)
    took = [float("inf") if r.seconds is None else r.seconds for r in done]
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
                       fix="give every client a timeout (ChatOpenAI(timeout=...), "
                           "httpx.AsyncClient(timeout=...)) and the request a deadline, or "
                           "set timeout= on the nodes that call out")
    return Finding(id=check, area="resilience", title=title, status="pass",
                   evidence=f"with every dependency hanging, every request came back within "
                            f"{worst:.2f} s", figure=round(worst, 2))
