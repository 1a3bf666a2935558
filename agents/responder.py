"""Responder: composes the answer from this request's facts only (a template, no model).

It never states anything a fact does not say; the output guard checks that anyway.
"""

from __future__ import annotations

from typing import Any

from graphs.state import Draft, Fact, InterlockState, Status, StepResult

__all__ = ["compose", "make_responder", "money"]

HELP = ("I can help with order status, shipment tracking, refunds and our refund policy. "
        "Tell me the order number, for instance: where is #1042?")


def money(cents: int, currency: str | None = "USD") -> str:
    """`$1,234.50` for USD, `1,234.50 EUR` otherwise."""
    return f"${cents / 100:,.2f}" if currency in (None, "USD") else f"{cents / 100:,.2f} {currency}"


def _reason(text: str) -> str:
    return text.split(": ", 1)[-1]


def _order(v: dict[str, Any]) -> str:
    if not v["found"]:
        return f"I couldn't find order {v['order_id']}."
    items = v.get("items") or []
    count = sum(i["quantity"] for i in items)
    names = ", ".join(i["name"] for i in items)
    status = str(v["status"]).replace("_", " ")
    text = (f"Order {v['order_id']} is {status}: placed {str(v['placed_at'])[:10]}, "
            f"{count} item{'s' if count != 1 else ''} ({names}), total "
            f"{money(v['total_cents'], v['currency'])}.")
    if v.get("delivered_at"):
        text += f" Delivered on {str(v['delivered_at'])[:10]}."
    return text


def _shipment(v: dict[str, Any], order_found: bool) -> str | None:
    if not v["found"]:
        return f"Order {v['order_id']} has not shipped yet." if order_found else None
    if v["live"]:
        status = str(v["status"]).replace("_", " ")
        text = (f"The shipment of order {v['order_id']} is {status} with {v['carrier']} "
                f"(tracking {v['tracking_number']})")
        if v.get("eta") and v["status"] != "delivered":
            text += f", expected {str(v['eta'])[:10]}"
        return text + (f". Latest: {v['last_event']}." if v.get("last_event") else ".")
    if v.get("unavailable_reason") == "unknown_to_carrier":
        return (f"{v['carrier']} does not know tracking number {v['tracking_number']} for order "
                f"{v['order_id']} yet.")
    return (f"I couldn't reach the carrier to check live tracking for order {v['order_id']} "
            f"right now. It shipped with {v['carrier']} on {str(v['shipped_at'])[:10]} "
            f"(tracking {v['tracking_number']}).")


def _policy(v: dict[str, Any]) -> str:
    if not v["found"]:
        return "No refund policy is in effect right now."
    return (f"Refund policy {v['version']} (in effect since {str(v['effective_from'])[:10]}): "
            f"{v['text']}")


def _refund(v: dict[str, Any]) -> str | None:
    order, status = v["order_id"], v["status"]
    amount = money(v["amount_cents"], v.get("currency")) if v.get("amount_cents") else None
    reasons = "; ".join(_reason(r) for r in v.get("reasons") or [])
    if status == "executed":
        return f"I refunded {amount} on order {order} (refund {v['refund_id']})."
    if status == "refused":
        return f"I can't refund order {order}: {reasons}."
    if status == "rejected":
        return f"The refund of {amount} on order {order} was not approved ({reasons})."
    if status == "pending":
        return (f"The refund of {amount} on order {order} is pending: the payments service has "
                f"not confirmed it yet. Retrying it can never pay twice.")
    if status == "failed":
        later = " It can be tried again later." if v.get("retryable") else ""
        return f"I couldn't refund order {order}: {reasons}.{later}"
    return None


def compose(state: InterlockState) -> tuple[Draft, Status]:
    """The draft answer and the request's final status."""
    status: Status = state.get("status") or "running"
    error = state.get("error")
    plan = state.get("plan")
    if status in ("refused", "failed") and error and not plan:
        return Draft(statements=[], notices=[error["message"]]), status
    lines: list[str] = []
    notices: list[str] = []
    results: dict[str, StepResult] = state.get("results", {})
    facts: dict[str, Fact] = state.get("facts", {})
    intents = plan["intents"] if plan else []
    found_orders: set[int] = set()
    refused_effect = False
    steps = plan["steps"] if plan else []
    ordered = sorted(steps, key=lambda s: ("orders", "shipping", "refunds", "policy").index(
        s["worker"]) if s["worker"] in ("orders", "shipping", "refunds", "policy") else 9)
    for step in ordered:
        result = results.get(step["id"])
        if result is None:
            continue
        if result["status"] in ("failed", "skipped") and not result["fact_ids"]:
            what = f" for #{step['order_id']}" if step["order_id"] else ""
            notices.append(f"I couldn't complete the {step['worker']} check{what}"
                           f" ({result['note'] or result['status']}).")
            continue
        for fid in result["fact_ids"]:
            fact = facts.get(fid)
            if fact is None:
                continue
            v = fact["value"]
            line: str | None = None
            if fact["kind"] == "order":
                if v["found"]:
                    found_orders.add(v["order_id"])
                line = _order(v)
            elif fact["kind"] == "shipment":
                line = _shipment(v, v["order_id"] in found_orders)
            elif fact["kind"] == "policy":
                line = _policy(v) if "policy" in intents else None
            elif fact["kind"] == "refund":
                refused_effect |= v["status"] in ("refused", "rejected")
                line = _refund(v)
            if line:
                lines.append(line)
    if "clarify" in intents:
        notices.append("Which order do you mean? Please include the order number, "
                       "for example 1042.")
    if "unknown" in intents and not lines:
        notices.append(HELP)
    if error:
        notices.append(error["message"])
    degraded = state.get("degraded") or []
    if degraded:
        notices.append(f"Could not be checked right now: {', '.join(degraded)}.")
    if status == "running":
        all_failed = bool(steps) and all(
            s["id"] in results and results[s["id"]]["status"] in ("failed", "skipped")
            for s in steps)
        status = "failed" if all_failed else ("refused" if refused_effect else "completed")
    if not lines and not notices:
        notices.append(HELP)
    return Draft(statements=lines, notices=notices), status


def make_responder() -> Any:
    """The responder node: writes the draft answer and the final status."""

    async def responder(state: InterlockState) -> dict[str, Any]:
        draft, status = compose(state)
        return {"draft_answer": draft, "status": status}

    return responder
