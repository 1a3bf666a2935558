import pytest

from agents.rules import rules_plan, unsupported_asks
from graphs.core.errors import InputError


def shape(text: str) -> list[tuple[str, int | None, int | None, list[str]]]:
    plan = rules_plan(text, turn=1)
    return [(s["worker"], s["order_id"], s["amount_cents"], s["depends_on"])
            for s in plan["steps"]]


def test_order_status_only() -> None:
    assert shape("What's the status of order 1007?") == [("orders", 1007, None, [])]


def test_tracking_runs_orders_and_shipping_in_parallel() -> None:
    plan = rules_plan("Where is my order 1042?", turn=3)
    assert [s["worker"] for s in plan["steps"]] == ["orders", "shipping"]
    assert plan["waves"] == [["t3.s1", "t3.s2"]]
    assert "tracking" in plan["intents"]


def test_refund_waits_for_order_and_policy() -> None:
    plan = rules_plan("Please refund $25.50 on order 1012", turn=1)
    refund = plan["steps"][-1]
    assert refund["worker"] == "refunds" and refund["amount_cents"] == 2550
    workers = {s["id"]: s["worker"] for s in plan["steps"]}
    assert sorted(workers[d] for d in refund["depends_on"]) == ["orders", "policy"]
    assert plan["waves"][-1] == [refund["id"]]
    assert "policy" not in plan["intents"]  # the policy is fetched, not asked about


@pytest.mark.parametrize("text", [
    "Don't refund order 1012, I still want it", "Has order 1012 been refunded yet?",
    "What is the refund status of order 1012?", "When will my refund for order 1012 arrive?",
    "No refund needed for order 1012, just tracking"])
def test_talking_about_a_refund_is_not_asking_for_one(text: str) -> None:
    plan = rules_plan(text, turn=1)
    assert "refunds" not in {s["worker"] for s in plan["steps"]}
    assert 1012 in {s["order_id"] for s in plan["steps"]}


def test_policy_question() -> None:
    plan = rules_plan("How long is your return window?", turn=1)
    assert [s["worker"] for s in plan["steps"]] == ["policy"]
    assert plan["intents"] == ["policy"]


def test_mixed_request() -> None:
    assert sorted(w for w, *_ in shape(
        "Where is order 1042 and what is your refund policy?")) == [
        "orders", "policy", "shipping"]


def test_no_order_number_asks_which() -> None:
    plan = rules_plan("where is my parcel?", turn=1)
    assert plan["steps"] == [] and plan["intents"] == ["clarify"]


def test_unrecognised() -> None:
    assert rules_plan("hello there", turn=1)["intents"] == ["unknown"]


@pytest.mark.parametrize("text", ["refund $20 on orders 1001 and 1003",
                                  "refund $20 and $30 on order 1001",
                                  "order 1042 costs $20?"])
def test_ambiguous_amounts_are_input_errors(text: str) -> None:
    with pytest.raises(InputError):
        rules_plan(text, turn=1)


@pytest.mark.parametrize(("text", "asks"), [
    ("can you cancel order 1050?", ["cancel an order"]),
    ("I want a cancellation of order 1050", ["cancel an order"]),
    ("please change the address on order 1042", ["change a delivery address"]),
    ("can I exchange order 1042 for a bigger size?", ["exchange an item"]),
    ("I want a replacement for order 1042", ["exchange an item"]),
    # Questions about what happened, not asks: answered as status questions.
    ("Why was order 1050 cancelled?", []),
    ("Where are my noise-cancelling headphones, order 1001?", []),
    ("Where is the replacement for order 1042?", []),
    ("What is your cancellation policy?", []),
])
def test_what_the_desk_cannot_do_is_told_from_what_happened(text: str,
                                                            asks: list[str]) -> None:
    plan = rules_plan(text, turn=1)
    assert unsupported_asks(text) == asks
    assert ("unsupported" in plan["intents"]) == bool(asks)
