"""`interlock chaos`: inject a dependency failure, run the same load governed and naive, compare.

Each scenario runs three times in one command on fresh homes: without faults (the latency
reference), with faults under Interlock's governor, and with faults under a naive baseline in
which every layer retries on its own (`tools/naive.py`). Every figure is measured: calls are
counted by the simulators, latencies by the clock, outcomes from the runs' own results.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from agents.rules import rules_plan
from graphs.core.clock import Clock
from graphs.core.errors import InputError
from graphs.executor import pending_effects, side_effecting
from graphs.runner import RunResult, open_interlock
from graphs.settings import DependencyPolicy, FaultSpec, Settings
from tools.model import build_chat_model
from tools.naive import NAIVE_LAYERS, NaiveGovernor
from tools.seed import build_seed
from tools.simulators.faults import SimulatorStats
from tools.simulators.model import ModelSimulator
from tools.toolbox import build_toolbox

__all__ = ["SCENARIOS", "ChaosReport", "Scenario", "format_report", "run_scenario"]

Mode = Literal["no-fault", "governed", "naive"]
MODES: tuple[Mode, ...] = ("no-fault", "governed", "naive")


@dataclass(frozen=True, slots=True, kw_only=True)
class Load:
    """One logical request of a scenario's load."""

    message: str
    kind: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """A fault to inject and the load to run against it."""

    name: str
    summary: str
    dependency: str
    faults: FaultSpec
    load: Callable[[int], list[Load]]
    needs: str
    """The kind of request that needs the faulty dependency (the logical requests it serves)."""
    uses_model: bool = False
    flaky: bool = False
    """Whether the dependency fails a share of calls (retries help) rather than being down."""


def _shipped_and_plain(n: int) -> list[Load]:
    seed = build_seed(Clock().now())
    shipped = [s.order_id for s in seed.shipments]
    plain = [o.id for o in seed.orders]
    loads = []
    for i in range(n):
        if i % 2 == 0:
            loads.append(Load(message=f"Where is my order {shipped[i // 2 % len(shipped)]}?",
                              kind="needs_carrier"))
        elif i % 10 == 1:
            loads.append(Load(message="What is your return policy?", kind="no_carrier"))
        else:
            loads.append(Load(message=f"What is the status of order {plain[i % len(plain)]}?",
                              kind="no_carrier"))
    return loads


def _refunds(n: int) -> list[Load]:
    now = Clock().now()
    seed = build_seed(now)
    orders = [o.id for o in seed.orders if o.status == "paid" or (
        o.status in ("delivered", "partially_refunded") and o.delivered_at is not None
        and o.delivered_at > now - timedelta(days=12))]
    return [Load(message=f"Refund $1 on order {orders[i % len(orders)]}", kind="refund")
            for i in range(n)]


def _tracking(n: int) -> list[Load]:
    shipped = [s.order_id for s in build_seed(Clock().now()).shipments]
    return [Load(message=f"Where is my order {shipped[i % len(shipped)]}?", kind="needs_model")
            for i in range(n)]


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario(name="carrier-outage", summary="the carrier fails every call",
             dependency="carrier", faults=FaultSpec(fail=1.0), load=_shipped_and_plain,
             needs="needs_carrier"),
    Scenario(name="carrier-slow", summary="the carrier answers after 5 s",
             dependency="carrier", faults=FaultSpec(latency=5.0), load=_shipped_and_plain,
             needs="needs_carrier"),
    Scenario(name="carrier-flaky", summary="30% of carrier calls fail (503)",
             dependency="carrier", faults=FaultSpec(fail=0.3), load=_shipped_and_plain,
             needs="needs_carrier", flaky=True),
    Scenario(name="payments-flaky", summary="30% of payment calls fail (503)",
             dependency="payments", faults=FaultSpec(fail=0.3), load=_refunds, needs="refund",
             flaky=True),
    Scenario(name="model-throttled", summary="the model answers 429 with Retry-After: 1",
             dependency="model", faults=FaultSpec(throttle=1.0, retry_after=1.0),
             load=_tracking, needs="needs_model", uses_model=True),
    Scenario(name="model-flaky", summary="30% of model calls fail (503)",
             dependency="model", faults=FaultSpec(fail=0.3), load=_tracking,
             needs="needs_model", uses_model=True, flaky=True),
)}


@dataclass(slots=True, kw_only=True)
class RunFigures:
    """What one mode of one scenario measured."""

    mode: Mode
    requests: int
    wall_s: float
    calls: dict[str, int]
    latencies_ms: dict[str, list[float]]
    outcomes: dict[str, Counter[str]]
    events: Counter[str]
    deadline_ratio_max: float
    refunds: dict[str, int] = field(default_factory=dict)
    fallbacks: int = 0

    def p(self, kind: str, q: float) -> float | None:
        """The q-quantile latency (ms) of one kind of request."""
        values = sorted(self.latencies_ms.get(kind, []))
        if not values:
            return None
        if len(values) == 1:
            return values[0]
        return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]

    def success_rate(self, kind: str) -> float | None:
        """Share of requests of `kind` that completed without a degraded dependency."""
        outcomes = self.outcomes.get(kind)
        if not outcomes:
            return None
        return outcomes["ok"] / sum(outcomes.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain data for `--json`."""
        kinds = sorted(self.latencies_ms)
        return {
            "mode": self.mode, "requests": self.requests, "wall_s": round(self.wall_s, 2),
            "calls": self.calls, "events": dict(self.events),
            "deadline_ratio_max": round(self.deadline_ratio_max, 3),
            "by_kind": {k: {"count": len(self.latencies_ms[k]),
                            "success_rate": self.success_rate(k),
                            "p50_ms": _round(self.p(k, 0.5)), "p99_ms": _round(self.p(k, 0.99)),
                            "outcomes": dict(self.outcomes[k])} for k in kinds},
            "refunds": self.refunds, "fallbacks": self.fallbacks,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


@dataclass(slots=True, kw_only=True)
class ChaosReport:
    """The three runs of one scenario, and the targets checked against them."""

    scenario: Scenario
    runs: dict[Mode, RunFigures]
    checks: list[tuple[str, bool, str]]
    settings: dict[str, Any]

    def served(self, mode: Mode) -> dict[str, Any]:
        """What one run served the requests needing the dependency, and what it cost.

        `in_request`: the share answered within the request with nothing degraded (a refund:
        made and confirmed); `calls_per_request`: calls the dependency received (counted by
        its simulator, settling passes included) per such request.
        """
        run, s = self.runs[mode], self.scenario
        logical = len(run.latencies_ms.get(s.needs, []))
        return {"logical_requests": logical, "in_request": run.success_rate(s.needs),
                "calls": run.calls[s.dependency],
                "calls_per_request": round(run.calls[s.dependency] / logical, 3)
                if logical else None}

    def to_dict(self) -> dict[str, Any]:
        """Plain data for `--json`."""
        return {"scenario": self.scenario.name, "summary": self.scenario.summary,
                "dependency": self.scenario.dependency, "settings": self.settings,
                "served": {m: self.served(m) for m in self.runs},
                "runs": {m: r.to_dict() for m, r in self.runs.items()},
                "checks": [{"check": c, "passed": ok, "measured": m}
                           for c, ok, m in self.checks]}


def _scaled(settings: Settings, scale: float) -> Settings:
    """Every dependency duration multiplied by `scale` (tests run the scenarios faster).

    Not the bulkhead wait: it absorbs event-loop scheduling, which does not scale.
    """
    if scale == 1.0:
        return settings

    def policy(p: DependencyPolicy) -> DependencyPolicy:
        return replace(p, timeout=p.timeout * scale, reset_timeout=p.reset_timeout * scale,
                       backoff_base=p.backoff_base * scale, backoff_cap=p.backoff_cap * scale,
                       retry_window=p.retry_window * scale)

    return replace(settings, deadline_s=settings.deadline_s * scale,
                   policies={d.name: policy(settings.policy(d.name))
                             for d in settings.dependencies})


def _faults(spec: FaultSpec, scale: float) -> FaultSpec:
    return replace(spec, latency=spec.latency * scale, retry_after=spec.retry_after * scale)


def _plan_draft(text: str) -> dict[str, Any]:
    """What the simulated model proposes: the rules planner's plan, in the model's schema."""
    try:
        plan = rules_plan(text, turn=1)
    except InputError:
        return {"intents": ["unknown"], "steps": []}
    short = {s["id"]: s["id"].split(".")[1] for s in plan["steps"]}
    return {"intents": plan["intents"], "steps": [
        {"id": short[s["id"]], "worker": s["worker"], "order_id": s["order_id"],
         "amount_cents": s["amount_cents"], "depends_on": [short[d] for d in s["depends_on"]]}
        for s in plan["steps"]]}


async def _run_mode(scenario: Scenario, mode: Mode, loads: Sequence[Load], base: Settings,
                    concurrency: int, scale: float, home: Path) -> RunFigures:
    settings = replace(base, home=home, urls={},
                       model="openai:interlock-sim" if scenario.uses_model else "rules")
    faults = _faults(scenario.faults, scale) if mode != "no-fault" else FaultSpec()
    model_sim = ModelSimulator(_plan_draft)
    naive = mode == "naive"
    chat_model = build_chat_model(settings, handler=model_sim,
                                  max_retries=2 if naive else 0) if scenario.uses_model else None
    toolbox = build_toolbox(settings, chat_model=chat_model,
                            governor=NaiveGovernor(settings, pause_s=0.05 * scale)
                            if naive else None)
    results: list[tuple[Load, RunResult, float]] = []
    queue: asyncio.Queue[Load] = asyncio.Queue()
    for load in loads:
        queue.put_nowait(load)
    async with open_interlock(toolbox=toolbox) as app:
        # Warm up (seed the store, import lazily loaded code, open connections) without
        # faults, then inject the fault and count from zero.
        for _ in range(min(4, len(loads))):
            await app.run(loads[0].message if scenario.dependency != "payments"
                          else "What is your return policy?")
        sims: dict[str, Any] = {"carrier": toolbox.carrier_sim,
                                "payments": toolbox.payments_sim, "model": model_sim}
        for sim in sims.values():
            if sim is not None:
                sim.stats = SimulatorStats()
        if sims[scenario.dependency] is not None:
            sims[scenario.dependency].faults.set(faults)
        started = time.perf_counter()
        async def worker() -> None:
            while not queue.empty():
                load = queue.get_nowait()
                t0 = time.perf_counter()
                result = await app.run(load.message)
                results.append((load, result, (time.perf_counter() - t0) * 1000))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
        refunds: dict[str, int] = {}
        if scenario.dependency == "payments":
            refunds = await _settle_refunds(app, results)
    calls = {dep: sim.stats.calls if sim is not None else 0 for dep, sim in sims.items()}
    latencies: dict[str, list[float]] = {}
    outcomes: dict[str, Counter[str]] = {}
    events: Counter[str] = Counter()
    fallbacks = 0
    deadline_ms = settings.deadline_s * 1000
    for load, result, ms in results:
        latencies.setdefault(load.kind, []).append(ms)
        outcome = ("ok" if result.status == "completed" and not result.degraded
                   else f"{result.status}{'+degraded' if result.degraded else ''}")
        outcomes.setdefault(load.kind, Counter())[outcome] += 1
        for event in result.events:
            detail = event["detail"]
            if event["kind"] == "rejected":
                events[f"rejected:{detail.get('reason')}"] += 1
            elif event["kind"] == "breaker":
                events[f"breaker:{detail.get('old')}->{detail.get('new')}"] += 1
            elif event["kind"] in ("retry", "deadline", "fallback"):
                events[event["kind"]] += 1
        if result.plan is not None and result.plan["source"] == "rules" and scenario.uses_model:
            fallbacks += 1
    ratio = max((ms / deadline_ms for _, _, ms in results), default=0.0)
    return RunFigures(mode=mode, requests=len(results), wall_s=wall, calls=calls,
                      latencies_ms=latencies, outcomes=outcomes, events=events,
                      deadline_ratio_max=ratio, refunds=refunds, fallbacks=fallbacks)


async def _settle_refunds(app: Any, results: list[tuple[Load, RunResult, float]]
                          ) -> dict[str, int]:
    """Count refunds at the payments service; settle pending ones by resuming their threads."""
    sim = app.toolbox.payments_sim
    assert sim is not None
    effects = side_effecting(app.graph)
    approved: dict[str, str] = {}  # idempotency key of an allowed refund -> thread
    pending_threads: list[str] = []  # threads with a refund pending or failed (retryable)

    def note_allowed(thread: str, result: RunResult) -> None:
        for fact in result.facts.values():
            key = fact["value"].get("idempotency_key") if fact["kind"] == "refund" else None
            if key and any(v["guard"] == "approval" and v["action"] == "allow"
                           and v["step_id"] == fact["step_id"] for v in result.verdicts):
                approved[key] = thread

    for _, result, _ in results:
        note_allowed(result.thread_id, result)
        if _unsettled(result, effects):
            pending_threads.append(result.thread_id)
    made_after_load = {r["idempotency_key"] for r in sim.all_refunds()}
    passes = 0
    while pending_threads and passes < 10:
        passes += 1
        still = []
        for thread in pending_threads:
            settled = await app.resume(thread)
            note_allowed(thread, settled)
            if _unsettled(settled, effects):
                still.append(thread)
        pending_threads = still
    made = sim.all_refunds()
    keys = Counter(r["idempotency_key"] for r in made)
    return {
        "requested": len(results), "approved": len(approved),
        "executed_after_load": len(made_after_load & set(approved)),
        "pending_after_load": len({t for t in approved.values()}
                                  - {approved[k] for k in made_after_load if k in approved}),
        "reconcile_passes": passes,
        "executed": sum(1 for k in approved if keys[k] == 1),
        "duplicates": sum(n - 1 for n in keys.values() if n > 1)
        + sum(1 for k in keys if k not in approved),
        "still_pending": len(pending_threads),
    }


def _unsettled(result: RunResult, effects: frozenset[str]) -> bool:
    """Whether a result still has a side effect pending or undone for a retryable reason."""
    return bool(pending_effects({"plan": result.plan, "facts": result.facts}, effects))


def _checks(scenario: Scenario, runs: Mapping[Mode, RunFigures],
            base: Settings, concurrency: int = 16) -> list[tuple[str, bool, str]]:
    checks: list[tuple[str, bool, str]] = []
    gov, naive, ref = runs["governed"], runs["naive"], runs["no-fault"]
    dep = scenario.dependency
    policy = base.policy(dep)
    if dep == "carrier":
        logical = len(gov.latencies_ms.get("needs_carrier", []))
        bound = logical * (1 + policy.retry_ratio) + policy.retry_reserve
        checks.append((f"governed carrier calls <= {logical} x {1 + policy.retry_ratio:g} + "
                       f"{policy.retry_reserve}", gov.calls["carrier"] <= bound,
                       f"{gov.calls['carrier']} <= {bound:g}"))
        if scenario.faults.fail == 1.0:
            checks.append(("naive carrier calls >= 3x logical requests",
                           naive.calls["carrier"] >= 3 * logical,
                           f"{naive.calls['carrier']} >= {3 * logical}"))
        rate = gov.success_rate("no_carrier")
        checks.append(("requests not needing the carrier succeed 100%", rate == 1.0,
                       f"{rate:.1%}" if rate is not None else "n/a"))
        g99, r99 = gov.p("no_carrier", 0.99), ref.p("no_carrier", 0.99)
        if g99 is not None and r99 is not None:
            checks.append(("their p99 within 1.2x of the no-fault run", g99 <= 1.2 * r99,
                           f"{g99:.1f} ms vs {r99:.1f} ms ({g99 / r99:.2f}x)"))
    if dep == "payments":
        refunds = gov.refunds
        # Nothing lost: every refund made once, or (a dependency still down when the passes
        # end) left unsettled with nothing moved, for a later `interlock resume`.
        settled = refunds["executed"] == refunds["approved"] == refunds["requested"]
        checks.append(("refunds executed == requested and approved (or left unsettled)",
                       settled or refunds["executed"] + refunds["still_pending"]
                       == refunds["requested"],
                       f"{refunds['executed']} executed, {refunds['approved']} approved, "
                       f"{refunds['requested']} requested, {refunds['still_pending']} left "
                       f"unsettled"))
        checks.append(("no refund made twice", refunds["duplicates"] == 0,
                       f"{refunds['duplicates']} duplicates"))
    if dep == "model":
        logical = gov.requests
        bound = logical * (1 + policy.retry_ratio) + policy.retry_reserve
        checks.append((f"governed model calls <= {logical} x {1 + policy.retry_ratio:g} + "
                       f"{policy.retry_reserve}", gov.calls["model"] <= bound,
                       f"{gov.calls['model']} <= {bound:g}"))
    if not scenario.flaky and (scenario.faults.fail == 1.0 or scenario.faults.throttle == 1.0):
        # Down: the breaker cuts it off once its window says so, whatever the load.
        window = policy.health_window + policy.attempts + concurrency
        checks.append((f"governed {dep} calls within the breaker's window "
                       f"({policy.health_window} + {policy.attempts} + {concurrency} in flight)",
                       gov.calls[dep] <= window, f"{gov.calls[dep]} <= {window}"))
    if scenario.flaky:
        g_rate = gov.success_rate(scenario.needs) or 0.0
        n_rate = naive.success_rate(scenario.needs) or 0.0
        logical = len(gov.latencies_ms.get(scenario.needs, [])) or 1
        g_calls, n_calls = gov.calls[dep] / logical, naive.calls[dep] / logical
        if scenario.faults.fail <= 0.3:  # the target's range: retries must serve them
            checks.append(("governed serves >= 95% within the request", g_rate >= 0.95,
                           f"{g_rate:.1%} (naive {n_rate:.1%})"))
        # Fewer beyond sampling error: two standard errors of the difference of two shares
        # of `logical` requests each (one unlucky request out of 40 is not "fewer").
        pooled = (g_rate + n_rate) / 2
        slack = 2 * math.sqrt(max(pooled * (1 - pooled), 1 / logical) * 2 / logical)
        checks.append(("governed never serves fewer with more calls than naive",
                       g_rate >= n_rate - slack or g_calls <= n_calls,
                       f"{g_rate:.1%} at {g_calls:.2f} calls per request; naive {n_rate:.1%} "
                       f"at {n_calls:.2f} (sampling error ±{slack:.1%})"))
    checks.append(("no request exceeds its deadline by more than 10%",
                   gov.deadline_ratio_max <= 1.1, f"max {gov.deadline_ratio_max:.2f}x"))
    return checks


async def run_scenario(name: str, *, requests: int = 200, concurrency: int = 16,
                       settings: Settings | None = None, time_scale: float = 1.0,
                       root: Path | None = None, fail_rate: float | None = None
                       ) -> ChaosReport:
    """Run one scenario in all three modes and check its targets.

    `fail_rate` replaces the share of calls the scenario's dependency fails (503).
    """
    if name not in SCENARIOS:
        raise InputError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}",
                         field="scenario")
    if requests < 1 or concurrency < 1:
        raise InputError("--requests and --concurrency must be at least 1", field="requests")
    if fail_rate is not None and not 0.0 <= fail_rate <= 1.0:
        raise InputError(f"--fail-rate is a share between 0 and 1, not {fail_rate:g}",
                         field="fail_rate")
    scenario = SCENARIOS[name]
    if fail_rate is not None and not scenario.faults.fail:
        raise InputError(f"--fail-rate changes the failure share of a scenario that fails calls "
                         f"({', '.join(n for n, s in SCENARIOS.items() if s.faults.fail)}); "
                         f"{name} slows or throttles them instead", field="fail_rate")
    if fail_rate is not None:
        scenario = replace(scenario, faults=replace(scenario.faults, fail=fail_rate),
                           summary=f"{fail_rate:.0%} of {scenario.dependency} calls fail (503)",
                           flaky=0.0 < fail_rate < 1.0)
    # The load refunds $1 on each of a few orders again and again: the cumulative limits and
    # the duplicate check, which would rightly put those before a human, are set aside here.
    base = replace(_scaled(settings or Settings.from_env(), time_scale),
                   auto_approve_order_cents=10**12, auto_approve_customer_cents=10**12,
                   duplicate_window_s=0.0)
    loads = scenario.load(requests)
    runs: dict[Mode, RunFigures] = {}
    with tempfile.TemporaryDirectory(prefix="interlock-chaos-", dir=root) as tmp:
        for mode in MODES:
            runs[mode] = await _run_mode(scenario, mode, loads, base, concurrency, time_scale,
                                         Path(tmp) / mode)
    policy = base.policy(scenario.dependency)
    checks = _checks(scenario, runs, base, concurrency)
    return ChaosReport(scenario=scenario, runs=runs, checks=checks,
                       settings={"requests": requests, "concurrency": concurrency,
                                 "time_scale": time_scale, "deadline_s": base.deadline_s,
                                 "policy": {k: getattr(policy, k) for k in (
                                     "timeout", "attempts", "fail_max", "reset_timeout",
                                     "max_concurrency", "retry_ratio", "retry_reserve")},
                                 "naive_layers": list(NAIVE_LAYERS)})


def format_report(report: ChaosReport) -> str:
    """The report as a side-by-side Markdown table, then the checks."""
    s = report.scenario
    runs = report.runs
    lines = [f"## {s.name}: {s.summary}", "",
             f"{report.settings['requests']} requests, concurrency "
             f"{report.settings['concurrency']}, deadline {report.settings['deadline_s']:g} s; "
             f"naive = every layer retries ({' x '.join(map(str, NAIVE_LAYERS))} attempts, no "
             f"budget, breaker or bulkhead)", "",
             "| figure | " + " | ".join(runs) + " |", "|---|" + "---:|" * len(runs)]

    def row(label: str, values: Sequence[Any]) -> None:
        lines.append(f"| {label} | " + " | ".join(
            "—" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))
            for v in values) + " |")

    dep = s.dependency
    row(f"{dep} calls", [r.calls[dep] for r in runs.values()])
    kinds = sorted({k for r in runs.values() for k in r.latencies_ms})
    for kind in kinds:
        count = len(runs["governed"].latencies_ms.get(kind, []))
        if (dep == "carrier" and kind == "needs_carrier") or dep in ("payments", "model"):
            row(f"{dep} calls per logical request ({kind})",
                [r.calls[dep] / count if count else None for r in runs.values()])
        row(f"{kind}: completed, nothing degraded", [r.success_rate(kind)
                                                      for r in runs.values()])
        row(f"{kind}: p50 ms", [r.p(kind, 0.5) for r in runs.values()])
        row(f"{kind}: p99 ms", [r.p(kind, 0.99) for r in runs.values()])
    standard = ["retry", "rejected:retry_budget_exhausted", "rejected:breaker_open",
                "rejected:bulkhead_full", "deadline", "breaker:closed->open"]
    for key in standard + sorted({k for r in runs.values() for k in r.events} - set(standard)):
        row(f"events: {key}", [r.events.get(key, 0) for r in runs.values()])
    if dep == "payments":
        for key in ("requested", "approved", "executed_after_load", "pending_after_load",
                    "reconcile_passes", "executed", "duplicates"):
            row(f"refunds: {key}", [r.refunds.get(key) for r in runs.values()])
    if s.uses_model:
        row("fallbacks to the rules planner", [r.fallbacks for r in runs.values()])
    row("max latency / deadline", [r.deadline_ratio_max for r in runs.values()])
    row("wall time s", [r.wall_s for r in runs.values()])
    lines += ["", "Checks (governed run):"]
    lines += [f"- {'PASS' if ok else 'FAIL'} {name}: {measured}"
              for name, ok, measured in report.checks]
    return "\n".join(lines)
