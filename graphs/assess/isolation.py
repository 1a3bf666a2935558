"""The isolation probe: with one dependency down, requests that never need it still answer.

A healthy baseline first: every dependency up (the model scripted, each request on its own
route, so some requests call a tool and some do not), each request's calls, time and writes
recorded. Then, for each dependency some requests called and others did not, two runs of the
same requests: the dependency failing every call, then hanging, each while several requests
that need it are in flight. A request that answered without it in the baseline must answer
again, and within three times its baseline time plus half a second.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from graphs.assess.intercept import Hang, Intercepted, Outbound, Reply, intercepted
from graphs.assess.probes import unavailable
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


async def baseline(graph: Any, inputs: Sequence[Any], *, timeout_s: float) -> list[Run]:
    """Every dependency healthy: each input once, input `n` on route `n`, writes observed."""
    with intercepted(healthy) as box:
        return await run_each(graph, inputs, box, "baseline", timeout_s=timeout_s,
                              observe=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """How the requests that never call one dependency fared while it was down."""

    host: str
    """The dependency."""
    mode: str
    """`failing` (503 on every call) or `hanging` (no answer)."""
    baseline_s: tuple[float, ...]
    """Their times in the healthy baseline."""
    seconds: tuple[float | None, ...]
    """Their times with it down (None: not back within the cap)."""
    hurt: tuple[str, ...]
    """What went wrong for each request that was hurt."""
    needers_answered: int
    """Requests that need it which still came back with an answer."""
    needers: int
    """Requests that need it, run alongside."""


def _down(host: str, fault: Callable[[Outbound], Reply | Hang]
          ) -> Callable[[Outbound], Reply | Hang]:
    return lambda call: fault(call) if call.host == host else healthy(call)


async def _reached(box: Intercepted, host: str, within_s: float) -> None:
    """Wait until `host` has been called, or `within_s` passed."""
    ends = time.monotonic() + within_s
    while box.to(host) == 0 and time.monotonic() < ends:  # noqa: ASYNC110 - no event to wait on
        await asyncio.sleep(0.01)


async def _outcome(graph: Any, given: Callable[[int], Any], host: str, mode: str,
                   needers: list[Run], others: list[Run], cap_s: float) -> Outcome:
    fault: Callable[[Outbound], Reply | Hang] = (
        unavailable if mode == "failing" else (lambda call: Hang(cap_s)))
    with intercepted(_down(host, fault)) as box:
        load = [asyncio.create_task(run_one(graph, given(needers[n % len(needers)].route), box,
                                            route=needers[n % len(needers)].route,
                                            tag=f"isolation-load-{mode}", timeout_s=cap_s * 2))
                for n in range(LOAD)]
        await _reached(box, host, within_s=1.0)
        ran = await asyncio.gather(*(run_one(graph, given(o.route), box, route=o.route,
                                             tag=f"isolation-{mode}", timeout_s=cap_s)
                                     for o in others))
        box.released.set()  # every hung call times out now
        done, pending = await asyncio.wait(load, timeout=cap_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        loaded = [t.result() for t in done if not t.cancelled() and t.exception() is None]
    hurt = []
    for before, after in zip(others, ran, strict=True):
        base = before.seconds or 0.0
        if after.seconds is None:
            hurt.append(f"route {after.route} not back within {cap_s:g} s")
        elif after.error:
            hurt.append(f"route {after.route} raised {after.error}")
        elif after.seconds > base * SLOWER + GRACE_S:
            hurt.append(f"route {after.route} took {after.seconds:.2f} s (baseline "
                        f"{base:.2f} s)")
    return Outcome(host=host, mode=mode, baseline_s=tuple(o.seconds or 0.0 for o in others),
                   seconds=tuple(r.seconds for r in ran), hurt=tuple(hurt),
                   needers_answered=sum(1 for r in loaded if r.answered), needers=LOAD)


def _worst(values: Sequence[float | None]) -> str:
    known = [v for v in values if v is not None]
    if len(known) < len(values):
        return "not back"
    return f"{max(known):.2f} s"


async def isolation_finding(graph: Any, runs: Sequence[Run], given: Callable[[int], Any], *,
                            cap_s: float = 5.0, prefix: str = ""
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
        for mode in ("failing", "hanging"):
            outcomes.append(await _outcome(graph, given, host, mode, needers, others, cap_s))
    said = []
    for o in outcomes:
        base = statistics.median(o.baseline_s)
        said.append(f"{o.host} {o.mode}, with {o.needers} requests that need it in flight: "
                    f"{len(o.seconds) - len(o.hurt)} of {len(o.seconds)} requests that never "
                    f"call it answered as before (baseline {base:.2f} s, now at worst "
                    f"{_worst(o.seconds)})" + (f"; hurt: {'; '.join(o.hurt[:3])}"
                                                if o.hurt else "")
                    + f"; {o.needers_answered} of {o.needers} that need it still answered")
    if unmeasured:
        said.append("not measured: " + ", ".join(unmeasured))
    hurt = sum(len(o.hurt) for o in outcomes)
    if not outcomes:
        return Finding(id=check, area="resilience", title=title, status="n/a",
                       evidence="; ".join(said) + ": no request went without a dependency, "
                                "so none can show isolation (give --input requests that "
                                "need different dependencies)", figure=0), []
    return Finding(
        id=check, area="resilience", title=title, status="fail" if hurt else "pass",
        evidence="; ".join(said), figure=hurt,
        fix="" if not hurt else
            "isolate each dependency: its own client and connection pool, a bulkhead (a "
            "semaphore per dependency), a timeout on every call and a breaker per dependency, "
            "so one that is down holds no resource the others need"), outcomes
