import pytest

from graphs.core.errors import InputError
from graphs.core.plans import compute_waves, find_cycle, mentions
from graphs.core.state import PlanStep


def step(sid: str, *deps: str) -> PlanStep:
    return PlanStep(id=sid, worker="orders", order_id=None, amount_cents=None,
                    depends_on=list(deps))


@pytest.mark.parametrize(("text", "orders", "amounts"), [
    ("Where is my order 1042?", [1042], []),
    ("Refund $25 on order #1042", [1042], [2500]),
    ("refund 1,200.50 dollars for 1001 and 1003", [1001, 1003], [120050]),
    ("refund 25 usd for order 1012", [1012], [2500]),
    ("orders 1042,1043 and 1044", [1042, 1043, 1044], []),
    ("call me at 555-0102-1037 or +1 555 0102", [], []),
    ("card 4111 1111 1111 1111, order 1042", [1042], []),
    ("order 42 and order 999", [], []),
    ("$19.99 for 1042.", [1042], [1999]),
    ("I ordered in March 2024, order 1012", [1012], []),
    ("since 2023 I wait for 1005; on Nov 3, 2025 it moved", [1005], []),
    ("refund order 2024 please", [2024], []),
])
def test_mentions(text: str, orders: list[int], amounts: list[int]) -> None:
    found = mentions(text)
    assert found.order_ids == orders
    assert found.amounts_cents == amounts


@pytest.mark.parametrize("text", ["refund $12.345 on 1042", "refund $abc for 1042",
                                  "refund $-5 on 1042", "refund $0 on 1042",
                                  "refund $1.2.3 on 1042"])
def test_malformed_amounts_are_input_errors(text: str) -> None:
    with pytest.raises(InputError) as caught:
        mentions(text)
    assert caught.value.field == "amount"


def test_waves_follow_dependencies() -> None:
    steps = [step("a"), step("b"), step("c", "a", "b"), step("d", "c"), step("e")]
    assert compute_waves(steps) == [["a", "b", "e"], ["c"], ["d"]]


def test_cycles_are_found() -> None:
    assert find_cycle([step("a"), step("b", "a")]) is None
    cycle = find_cycle([step("a", "c"), step("b", "a"), step("c", "b")])
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    with pytest.raises(ValueError):
        compute_waves([step("a", "b"), step("b", "a")])
