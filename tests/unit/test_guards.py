import re
from datetime import UTC, datetime, timedelta

import pytest

from agents.orders import OrderValue
from agents.refunds import policy_reasons
from agents.registry import DEFAULT_WORKERS
from graphs.core.effects import Proposal
from graphs.core.errors import InputError
from graphs.core.state import Draft, Fact, Plan, PlanStep
from graphs.settings import Settings
from guards.facts import check_fact
from guards.intake import MAX_BYTES, check_message
from guards.output import check_answer, redact
from guards.plan import plan_problems

WORKERS = {w.name: w for w in DEFAULT_WORKERS}


# -- intake ------------------------------------------------------------------------------------

def test_intake_accepts_plain_text() -> None:
    assert check_message("  Where is my order 1042?\n") == "Where is my order 1042?"
    assert check_message([{"type": "text", "text": "order 1042"}]) == "order 1042"


@pytest.mark.parametrize(("content", "field"), [
    ("", "message"), ("   \n\t", "message"), ("x" * (MAX_BYTES + 1), "message"),
    ("é" * (MAX_BYTES // 2 + 1), "message"), ("order 1042\x00\x01", "message"),
    ("bad \udcff bytes", "message"), (b"bytes".decode() and 42, "message"),
    ([{"type": "image_url", "image_url": "x"}], "message"),
    ("где мой заказ 1042", "language"),
])
def test_intake_rejects(content: object, field: str) -> None:
    with pytest.raises(InputError) as caught:
        check_message(content)
    assert caught.value.field == field
    assert caught.value.message  # a sentence for a person


# -- plan --------------------------------------------------------------------------------------

def plan(*steps: PlanStep, source: str = "model") -> Plan:
    return Plan(source=source, intents=[], steps=list(steps), waves=[])  # type: ignore[typeddict-item]


def step(n: int, worker: str, order: int | None = None, amount: int | None = None,
         deps: tuple[int, ...] = ()) -> PlanStep:
    return PlanStep(id=f"t1.s{n}", worker=worker, order_id=order, amount_cents=amount,
                    depends_on=[f"t1.s{d}" for d in deps])


def problems(p: Plan, text: str, **settings: int) -> list[str]:
    return plan_problems(p, text, turn=1, settings=Settings(**settings), workers=WORKERS)


def test_sound_plan_passes() -> None:
    p = plan(step(1, "policy"), step(2, "orders", 1001), step(3, "refunds", 1001, 2500, (1, 2)))
    assert problems(p, "refund $25 on order 1001") == []


@pytest.mark.parametrize(("p", "text", "code"), [
    (plan(step(1, "payroll", 1001)), "order 1001", "unknown_worker"),
    (plan(step(1, "orders", 1042)), "order 1001", "unmentioned_order"),
    (plan(step(1, "policy"), step(2, "orders", 1001),
          step(3, "refunds", 1001, 99900, (1, 2))), "refund $25 on 1001", "unmentioned_amount"),
    (plan(step(1, "policy"), step(2, "orders", 1001), step(3, "refunds", 1001, None, (1,))),
     "refund 1001", "bad_order"),
    (plan(step(1, "orders", 1001, deps=(2,)), step(2, "shipping", 1001, deps=(1,))),
     "where is 1001", "dependency_cycle"),
    (plan(step(1, "orders", 1001, deps=(7,))), "order 1001", "unknown_dependency"),
    (plan(step(1, "orders")), "my order", "missing_order"),
    (plan(step(1, "policy", 1001)), "policy for 1001", "unexpected_order"),
    (plan(step(1, "orders", 1001, 500)), "order 1001 $5", "unexpected_amount"),
    (plan(step(1, "orders", 1001), step(2, "orders", 1001)), "order 1001", "duplicate_step"),
    (plan(PlanStep(id="x", worker="orders", order_id=1001, amount_cents=None, depends_on=[])),
     "order 1001", "bad_step_id"),
])
def test_unsound_plans_are_rejected(p: Plan, text: str, code: str) -> None:
    found = problems(p, text)
    assert any(x.startswith(code) for x in found), found


def test_step_and_side_effect_budgets() -> None:
    many = plan(*[step(n, "orders", 1000 + n) for n in range(1, 10)])
    text = " ".join(str(1000 + n) for n in range(1, 10))
    assert any(x.startswith("too_many_steps") for x in problems(many, text, max_steps=8))
    two = plan(step(1, "policy"), step(2, "orders", 1001), step(3, "refunds", 1001, None, (1, 2)),
               step(4, "orders", 1003), step(5, "refunds", 1003, None, (1, 4)))
    found = problems(two, "refund 1001 and 1003")
    assert any(x.startswith("too_many_side_effects") for x in found), found


# -- facts -------------------------------------------------------------------------------------

def order_fact(**changes: object) -> Fact:
    fact = Fact(id="order:1042", kind="order", subject="1042",
                value=OrderValue(order_id=1042, found=False).model_dump(mode="json"),
                source="store", version=None, as_of="2026-11-25T12:00:00Z", worker="orders",
                worker_version="1.0.0", step_id="t1.s1", scope="staff")
    fact.update(changes)  # type: ignore[typeddict-item]
    return fact


def check(fact: object, worker: str = "orders", step_id: str = "t1.s1") -> str | None:
    owns = {w.name: w.owns for w in DEFAULT_WORKERS}
    owner_of = {k: w for w, kinds in owns.items() for k in kinds}
    return check_fact(fact, worker=worker, step_id=step_id, owns=owns[worker],
                      owner_of=owner_of)


def test_owned_wellformed_fact_passes() -> None:
    assert check(order_fact()) is None


def test_fact_problems() -> None:
    assert (check(order_fact(worker="shipping"), worker="shipping") or "").startswith(
        "ownership: shipping may not write order facts")
    assert (check(order_fact(worker="refunds"), worker="orders") or "").startswith("provenance")
    assert (check(order_fact(value={"order_id": "x", "found": False})) or "").startswith(
        "schema")
    assert (check(order_fact(value={"order_id": 1, "found": True, "secret": 1})) or ""
            ).startswith("schema")
    assert (check(order_fact(id="order:9")) or "").startswith("schema")
    assert (check({"id": "order:1"}) or "").startswith("schema")


# -- output ------------------------------------------------------------------------------------

def test_redaction() -> None:
    text, found = redact("Mail ada.lovelace@example.com or call +1-555-0102-1037 / "
                         "(555) 010-2103; card 4111 1111 1111 1111.")
    assert "@" not in text and "4111" not in text and "555" not in text
    assert {f.split()[0] for f in found} == {"email", "phone", "card"}
    clean = "Order 1042 total $1,130.00, tracking JD1042321604, placed 2026-11-19."
    assert redact(clean) == (clean, [])


@pytest.mark.parametrize(("text", "personal"), [
    ("call +15550102103 now", "5550102103"), ("call 555-1234", "555-1234"),
    ("call 5550102103.", "5550102103"), ("mail bob@localhost", "bob@localhost"),
    ("card 4111-1111-1111-1111", "4111-1111"), ("card 4111.1111.1111.1111", "4111.1111"),
    ("card 4111111111111111", "41111111"), ("ssn 123-45-6789", "123-45-6789"),
    ("iban DE89 3704 0044 0532 0130 00", "3704 0044"),
    ("iban GB82WEST12345698765432", "GB82WEST"), ("I live at 221B Baker Street", "Baker"),
    ("at 12 main street", "main street"), ("12 Main st", "Main st"),
    ("+44 20 7946 0958", "7946")])
def test_redaction_takes_the_personal_data_out(text: str, personal: str) -> None:
    redacted, found = redact(text)
    assert found, text
    assert personal not in redacted, redacted
    # Nothing of it is left: no run of 4 or more of its digits, no piece of its words.
    digits = re.sub(r"\D", "", personal)
    assert all(digits[i:i + 4] not in re.sub(r"\D", "", redacted)
               for i in range(max(len(digits) - 3, 0))), redacted
    words = [w for w in re.findall(r"[A-Za-z]{3,}", personal) if w.lower() != "card"]
    assert not any(w in redacted for w in words), redacted


@pytest.mark.parametrize("text", [
    "tracking 1Z1001123456 and FX1003987654", "refund rf_1234567890abcdef done",
    "at 14:42 on 2026-11-25", "orders 1001, 1002 and 1003", "$12,345.67 refunded",
    "key il_0123456789abcdef0123456789", "checkpoint 1f0c3c1a-2b3c-6d7e-8f90-123456789abc",
    "order #1012 for $1.00", "The 30-day window closed on 2026-10-01 (refund policy v2)."])
def test_redaction_leaves_identifiers_alone(text: str) -> None:
    assert redact(text) == (text, [])


def test_redaction_keeps_known_tracking_numbers() -> None:
    # Mod-97 valid, so it reads as an account number unless a fact says it is tracking.
    assert redact("tracking BE68539007547034")[1] == ["iban x1"]
    assert redact("tracking BE68539007547034", keep=["BE68539007547034"])[1] == []


def shipment(order: int = 1042, tracking: str = "JD1042321604") -> Fact:
    return Fact(id=f"shipment:{order}", kind="shipment", subject=str(order),
                value={"order_id": order, "found": True, "tracking_number": tracking},
                source="carrier", version=None, as_of="x", worker="shipping",
                worker_version="1", step_id="t1.s2", scope="staff")


def refund(order: int, status: str, amount: int = 2500) -> Fact:
    return Fact(id="refund:t1.s3", kind="refund", subject="t1.s3",
                value={"order_id": order, "status": status, "amount_cents": amount},
                source="payments", version=None, as_of="x", worker="refunds",
                worker_version="1", step_id="t1.s3", scope="staff")


GROUNDS = [g for w in DEFAULT_WORKERS for g in w.grounds]
CLAIMS = [c for w in DEFAULT_WORKERS for c in w.claims]


def answer(*statements: str, facts: list[Fact]) -> tuple[str, list[str]]:
    return check_answer(Draft(statements=list(statements), notices=["notice"]), facts,
                        GROUNDS, CLAIMS)


def test_grounded_statements_pass() -> None:
    text, found = answer("The shipment of order 1042 is in transit (tracking JD1042321604).",
                         "I refunded $25.00 on order 1042.",
                         facts=[shipment(), refund(1042, "executed")])
    assert found == [] and "I refunded $25.00 on order 1042." in text
    assert text.endswith("notice")


@pytest.mark.parametrize(("statement", "facts", "code"), [
    ("Order 1043 has shipped.", [shipment()], "unbacked_order"),
    ("Use tracking JD9999999999.", [shipment()], "unbacked_tracking"),
    ("Order 1042 cost $99.00.", [shipment()], "unbacked_amount"),
    ("I refunded $25.00 on order 1042.", [shipment(), refund(1042, "pending")],
     "unexecuted_refund"),
    ("Your refund has been issued.", [shipment()], "unexecuted_refund"),
    ("We will refund order 1042 tomorrow.", [shipment()], "unexecuted_refund"),
])
def test_unbacked_statements_are_withheld(statement: str, facts: list[Fact], code: str) -> None:
    text, found = answer(statement, "The shipment of order 1042 is on its way.", facts=facts)
    assert [f.split(":")[0] for f in found] == [code]
    assert statement not in text and "order 1042 is on its way" in text
    assert "withheld" in text


def test_policy_wording_is_not_a_refund_promise() -> None:
    text, found = answer("Orders that have not shipped yet may be refunded in full. A refund "
                         "never exceeds what was paid.", facts=[])
    assert found == [] and "may be refunded" in text


# -- approval policy ---------------------------------------------------------------------------

TOP_LEVEL = ("impact_cents", "policy_version", "requested_at")


def proposal(**changes: object) -> Proposal:
    """A refund proposal; `changes` name its fields (the order's go into its details)."""
    now = datetime(2026, 11, 25, tzinfo=UTC)
    details: dict[str, object] = {
        "order_id": 1001, "order_status": "delivered",
        "delivered_at": (now - timedelta(days=3)).isoformat(), "paid_cents": 18900,
        "refunded_cents": 0, "return_window_days": 14, "seen_cents": 0}
    top: dict[str, object] = {"impact_cents": 2500, "policy_version": "v2",
                              "requested_at": now.isoformat()}
    for key, value in changes.items():
        (top if key in TOP_LEVEL else details)[key] = value
    return Proposal(  # type: ignore[typeddict-item]
        effect="refunds", kind="refund_approval", step_id="t1.s3", summary="Refund",
        subject="order:1001", principal="customer:3", currency="USD", amount_stated=True,
        key="il_x", effect_id="fx_x", requested_by={"kind": "staff", "customer_id": None},
        shown={"order_id": 1001, "amount_cents": top["impact_cents"]}, details=details,
        terms={"order_id": 1001, "amount_cents": top["impact_cents"], "currency": "USD"},
        recent=[], facts=[], **top)


def test_policy_allows_inside_window() -> None:
    assert policy_reasons(proposal()) == []


@pytest.mark.parametrize(("changes", "code"), [
    ({"delivered_at": "2026-11-05T00:00:00+00:00"}, "outside_window"),
    ({"order_status": "cancelled", "paid_cents": 0}, "not_charged"),
    ({"order_status": "shipped", "delivered_at": None}, "in_transit"),
    ({"impact_cents": 18901}, "exceeds_paid"),
    ({"refunded_cents": 17000}, "exceeds_paid"),
    ({"policy_version": None, "return_window_days": None}, "no_policy"),
])
def test_policy_refusals_cite_the_version(changes: dict[str, object], code: str) -> None:
    reasons = policy_reasons(proposal(**changes))
    assert reasons and reasons[0].startswith(code)
    if code != "no_policy":
        assert "refund policy v2" in reasons[0]


def test_window_is_judged_at_request_time_with_the_pinned_version() -> None:
    # Delivered 20 days before the request: v1's 30-day window would allow it, v2's 14 not.
    delivered = "2026-11-05T00:00:00+00:00"
    assert policy_reasons(proposal(delivered_at=delivered, policy_version="v1",
                                   return_window_days=30)) == []
    assert policy_reasons(proposal(delivered_at=delivered))[0].startswith("outside_window")
