"""The isolation probe: with one dependency down, requests that never need it still answer.

A healthy baseline first: every dependency up (the model scripted, each request on its own
route, so some requests call a tool and some do not), each request's calls, time and writes
recorded. Then, for each dependency some requests called and others did not, three runs of the
requests that never call it, each while several requests that need it are in flight: with
every dependency up (the control), with it failing every call, and with it hanging. A request
that answered in the control must answer again, within three times its control time plus half
a second: what concurrency alone costs is not blamed on the outage.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from graphs.assess.intercept import Hang, Intercepted
from graphs.assess.probes import Answer, faulty, session, unavailable
from graphs.assess.runs import Run, run_each, run_one
from graphs.assess.scorecard import Finding
from graphs.assess.scripted import healthy

__all__ = ["LOAD", "Outcome", "baseline", "isolation_finding"]

LOAD = 8
"""Requests that need the downed dependency, in flight while the others run."""
SLOWER = 3.0
"""A request is hurt when it takes longer than this many times its baseline..."""
GRACE_S = 0.5
"""...plus this."""


async def baseline(graph: Any, inputs: Sequence[Any], *, timeout_s: float,
                   box: Intercepted | None = None) -> list[Run]:
    """Every dependency healthy: each input once, input `n` on route `n`, writes observed."""
    async with session(box) as live, live.phase(healthy):
        return await run_each(graph, inputs, live, "baseline", timeout_s=timeout_s,
                              observe=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """How the requests that never call one dependency fared while it was down."""

    host: str
    """The dependency."""
    mode: str
    """`failing` (503 on every call) or `hanging` (no answer)."""
    baseline_s: tuple[float, ...]
    """Their times under the same load with every dependency up (the control run)."""
    seconds: tuple[float | None, ...]
    """Their times with it down (None: not back within the cap)."""
    hurt: tuple[str, ...]
    """What went wrong for each request that was hurt."""
    needers_answered: int
    """Requests that need it which still came back with an answer."""
    needers: int
    """Requests that need it, run alongside."""


async def _reached(box: Intercepted, host: str, within_s: float) -> None:
    """Wait until `host` has been called, or `within_s` passed."""
    ends = time.monotonic() + within_s
    while box.to(host) == 0 and time.monotonic() < ends:  # noqa: ASYNC110 - no event to wait on
        await asyncio.sleep(0.01)


async def _loaded(graph: Any, given: Callable[[int], Any], host: str, fault: Answer,
                  needers: list[Run], others: list[Run], cap_s: float, box: Intercepted,
                  tag: str) -> tuple[list[Run], list[Run]]:
    """The `others` run while LOAD requests that need `host` are in flight against `fault`."""
    async with box.phase(faulty(host, fault)):
        load = [asyncio.create_task(run_one(graph, given(needers[n % len(needers)].route), box,
                                            route=needers[n % len(needers)].route,
                                            tag=f"isolation-load-{tag}", timeout_s=cap_s * 2))
                for n in range(LOAD)]
        await _reached(box, host, within_s=1.0)
        ran = list(await asyncio.gather(*(run_one(graph, given(o.route), box, route=o.route,
                                                  tag=f"isolation-{tag}", timeout_s=cap_s)
                                          for o in others)))
        box.released.set()  # every hung call times out now
        done, pending = await asyncio.wait(load, timeout=cap_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return ran, [t.result() for t in done if not t.cancelled() and t.exception() is None]


async def _outcome(graph: Any, given: Callable[[int], Any], host: str, mode: str,
                   needers: list[Run], others: list[Run], cap_s: float, box: Intercepted,
                   control: list[Run]) -> Outcome:
    fault: Answer = unavailable if mode == "failing" else (lambda call: Hang(cap_s))
    ran, loaded = await _loaded(graph, given, host, fault, needers, others, cap_s, box, mode)
    hurt = []
    for calm, after in zip(control, ran, strict=True):
        base = calm.seconds if calm.seconds is not None else cap_s
        if after.seconds is None:
            hurt.append(f"route {after.route} not back within {cap_s:g} s")
        elif after.error and not calm.error:
            hurt.append(f"route {after.route} raised {after.error}")
        elif after.seconds > base * SLOWER + GRACE_S:
            hurt.append(f"route {after.route} took {after.seconds:.2f} s (under the same load "
                        f"with it up: {base:.2f} s)")
    return Outcome(host=host, mode=mode,
                   baseline_s=tuple(c.seconds if c.seconds is not None else cap_s
                                    for c in control),
                   seconds=tuple(r.seconds for r in ran), hurt=tuple(hurt),
                   needers_answered=sum(1 for r in loaded if r.answered), needers=LOAD)


def _worst(values: Sequence[float | None]) -> str:
    known = [v for v in values if v is not None]
    if len(known) < len(values):
        return "not back"
    return f"{max(known):.2f} s"


async def isolation_finding(graph: Any, runs: Sequence[Run], given: Callable[[int], Any], *,
                            cap_s: float = 5.0, prefix: str = "",
                            box: Intercepted | None = None
                            ) -> tuple[Finding, list[Outcome]]:
    """Isolation, measured from the healthy `runs`; `given(route)` is that route's input."""
    check, title = f"{prefix}resilience.isolation", "one dependency down spares the rest"
    hosts = list(dict.fromkeys(c.host for r in runs for c in r.calls))
    if not hosts:
        return Finding(id=check, area="resilience", title=title, status="n/a",
                       evidence=f"{len(runs)} healthy requests made no outbound HTTP call: "
                                f"no dependency to take down", figure=0), []
    outcomes: list[Outcome] = []
    unmeasured: list[str] = []
    for host in hosts:
        needers = [r for r in runs if host in r.hosts()]
        others = [r for r in runs if host not in r.hosts() and r.answered]
        if not others:
            unmeasured.append(f"{host} (every request that answered called it)")
            continue
        async with session(box) as live:
            # The control: the same load with every dependency up, so that what concurrency
            # alone costs is not blamed on the outage.
            control, _ = await _loaded(graph, given, host, healthy, needers, others, cap_s,
                                       live, "control")
            for mode in ("failing", "hanging"):
                outcomes.append(await _outcome(graph, given, host, mode, needers, others,
                                               cap_s, live, control))
    said = []
    for o in outcomes:
        base = statistics.median(o.baseline_s)
        said.append(f"{o.host} {o.mode}, with {o.needers} requests that need it in flight: "
                    f"{len(o.seconds) - len(o.hurt)} of {len(o.seconds)} requests that never "
                    f"call it answered as before (with it up, under the same load: "
                    f"{base:.2f} s; now at worst {_worst(o.seconds)})"
                    + (f"; hurt: {'; '.join(o.hurt[:3])}" if o.hurt else "")
                    + f"; {o.needers_answered} of {o.needers} that need it still answered")
    if unmeasured:
        said.append("not measured: " + ", ".join(unmeasured))
    hurt = sum(len(o.hurt) for o in outcomes)
    blocking = sorted({c.host for r in runs for c in r.calls if c.sync})
    if hurt and blocking:
        said.append(f"the calls to {', '.join(blocking)} block a worker thread (sync code): "
                    f"LangGraph runs sync nodes on one shared thread pool, and requests stuck "
                    f"on a hanging dependency hold its threads")
    if not outcomes:
        return Finding(id=check, area="resilience", title=title, status="n/a",
                       evidence="; ".join(said) + ": no request went without a dependency, "
                                "so none can show isolation (give --input requests that "
                                "need different dependencies)", figure=0), []
    return Finding(
        id=check, area="resilience", title=title, status="fail" if hurt else "pass",
        evidence="; ".join(said), figure=hurt,
        fix="" if not hurt else
            ("make the nodes that call out async (an async client) or give every blocking call "
             "a short timeout; " if blocking else "")
            + "isolate each dependency: its own client and connection pool, a bulkhead (a "
            "semaphore per dependency), a timeout on every call and a breaker per dependency, "
            "so one that is down holds no resource the others need"), outcomes
