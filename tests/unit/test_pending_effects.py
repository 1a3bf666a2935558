"""Which steps `interlock resume` settles: only side effects left pending or undone."""

from __future__ import annotations

from typing import Any

from graphs.executor import pending_effects


def _fact(step_id: str, worker: str, **value: Any) -> dict[str, Any]:
    return {"id": f"{worker}:{step_id}", "kind": worker, "worker": worker, "step_id": step_id,
            "value": value}


def test_only_the_side_effecting_workers_steps_are_settled() -> None:
    plan = {"steps": [{"id": "t1.s1", "worker": "returns"}, {"id": "t1.s2", "worker": "refunds"},
                      {"id": "t1.s3", "worker": "refunds"}, {"id": "t1.s4", "worker": "refunds"}]}
    facts = {f["id"]: f for f in (
        _fact("t1.s1", "returns", status="pending"),  # a read-only worker's own word
        _fact("t1.s2", "refunds", status="pending"),
        _fact("t1.s3", "refunds", status="failed", retryable=True),
        _fact("t1.s4", "refunds", status="failed", retryable=False))}
    state = {"plan": plan, "facts": facts}
    assert pending_effects(state, {"refunds"}) == {"t1.s2": "reconcile", "t1.s3": "run"}
    assert pending_effects(state, set()) == {}
