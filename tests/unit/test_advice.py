"""An advisor (the claims worker) only adds caution: the plan guard orders, the gate asks."""

from typing import Any

from agents import claims
from agents.registry import DEFAULT_WORKERS
from graphs.core.state import Plan, PlanStep
from graphs.settings import Settings
from guards.approval import Advisor, caution_reasons
from guards.plan import advised, plan_problems

WORKERS = {w.name: w for w in (*DEFAULT_WORKERS, claims.SPEC)}
TEXT = "Order 1034 arrived broken, refund $5"


def step(n: int, worker: str, order: int | None = 1034, amount: int | None = None,
         deps: list[str] | None = None, **more: Any) -> PlanStep:
    return PlanStep(id=f"t1.s{n}", worker=worker, order_id=order, amount_cents=amount,
                    depends_on=deps or [], **more)  # type: ignore[typeddict-item]


def steps(claim_deps: list[str]) -> list[PlanStep]:
    return [step(1, "policy", order=None), step(2, "orders"),
            step(3, "refunds", amount=500, deps=["t1.s1", "t1.s2"]),
            step(4, "claims", deps=claim_deps)]


def test_the_refund_waits_for_the_claim_whoever_planned_it() -> None:
    linked, added = advised(steps(["t1.s2"]), WORKERS)
    refund = linked[2]
    assert refund["depends_on"] == ["t1.s1", "t1.s2", "t1.s4"]
    assert refund["advised_by"] == ["t1.s4"]
    assert added == ["advised: t1.s3 (refunds) waits for t1.s4 (claims)"]
    assert "advised_by" not in linked[3]


def test_a_claim_on_another_order_advises_nothing() -> None:
    plan = steps(["t1.s2"])
    plan[3] = step(4, "claims", order=1042)
    linked, added = advised(plan, WORKERS)
    assert "advised_by" not in linked[2] and added == []


def test_a_planner_cannot_mark_its_own_advice() -> None:
    plan = steps(["t1.s2"])
    plan[1] = step(2, "orders", advised_by=["t1.s1"])  # a forged mark: an order step
    linked, _ = advised(plan, WORKERS)
    assert "advised_by" not in linked[1]


def test_a_claim_waiting_for_the_refund_is_a_cycle() -> None:
    plan = Plan(source="model", intents=["refund"], steps=steps(["t1.s2", "t1.s3"]), waves=[])
    problems = plan_problems(plan, TEXT, turn=1, settings=Settings(), workers=WORKERS)
    assert any(p.startswith("dependency_cycle") for p in problems), problems


def _proposal(subject: str = "order:1034") -> Any:
    return {"subject": subject}


def _fact(verdict: str | None, worker: str = "claims", order: int = 1034) -> Any:
    return {"kind": "claim_assessment", "worker": worker,
            "value": {"order_id": order, "verdict": verdict, "reasons": ["no photo"]}}


def test_only_doubt_from_the_advisor_itself_about_this_subject_cautions() -> None:
    advisors = [Advisor("claims", claims.SPEC.caution)]  # type: ignore[arg-type]
    for verdict in ("needs_evidence", "implausible"):
        [(fid, why)] = caution_reasons(_proposal(), {"c": _fact(verdict)}, advisors).items()
        assert fid == "c" and why.startswith(f"caution: claim_{verdict}") and "no photo" in why
        assert "the team's own words" in why  # what staff read is marked as the team's
    [(_, why)] = caution_reasons(_proposal(), {"c": _fact(None)}, advisors).items()
    assert why.startswith("caution: claim_unassessed")  # not assessed: a human decides
    for facts in ({"c": _fact("plausible")},
                  {"c": _fact("needs_evidence", worker="orders")},
                  {"c": _fact("needs_evidence", order=1042)}):
        assert caution_reasons(_proposal(), facts, advisors) == {}


def test_the_claims_rule_plans_a_check_for_claimed_refunds_only() -> None:
    from agents.rules import rules_plan

    workers = list(WORKERS.values())
    for text in ("Order 1034 arrived in pieces, refund $5", "order 1034 is busted. refund $5",
                 "Refund $5 on order 1034, the headphones stopped working",
                 "The parcel for order 1034 was never received. Refund $5",
                 "Order 1034 didn\u2019t arrive, refund $5", "order 1034 isn\u2019t working. "
                 "Refund $5", "The box of order 1034 was empty. Refund $5",
                 "Order 1034 arrived unusable, refund $5"):
        plan = rules_plan(text, turn=1, workers=workers)
        assert [s["worker"] for s in plan["steps"]].count("claims") == 1, text
    for text in ("Refund $5 on order 1034 please", "Order 1034 arrived broken, where is it?"):
        plan = rules_plan(text, turn=1, workers=workers)
        assert "claims" not in [s["worker"] for s in plan["steps"]], text
