"""A run as a timeline, from its checkpoints and recorded events alone (no network, no LangSmith).

A node that recorded its own span (`spans` in state: the workers, which run side by side) is
drawn from it; any other spans from the previous checkpoint to its own. Each dependency attempt
spans its recorded duration; retries, breaker transitions, rejections, reuses, refreshes, guard
verdicts and approvals are marks in time. A thread is cut into segments where it waited (for
a new request, or for a human), so a wait of hours does not squash the steps around it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from langgraph.pregel import Pregel

from checkpoints.lineage import history
from graphs.core.clock import parse_iso

__all__ = ["timeline"]


def _at(text: str | None) -> datetime | None:
    if not text:
        return None
    return parse_iso(text)


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _node_spans(row: dict[str, Any], start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The row's nodes, each from its own recorded span if it has one, else the whole step."""
    own = list(row.get("spans") or [])
    spans = []
    for node in row["nodes"]:
        mine = next((s for s in own if s.get("node") == node), None)
        begin, finish = start, end
        if mine is not None:
            own.remove(mine)
            begin = _at(mine.get("start")) or start
            finish = _at(mine.get("end")) or end
        spans.append({"kind": "node", "name": node, "step": row["step"],
                      "start": _iso(begin), "end": _iso(finish),
                      "step_id": mine.get("step_id") if mine else None,
                      "writes": row["writes"].get(node, [])})
    return spans


def _marks(row: dict[str, Any]) -> list[dict[str, Any]]:
    marks = []
    for verdict in row["verdicts"]:
        where = f" {verdict['step_id']}" if verdict.get("step_id") else ""
        marks.append({"kind": "verdict", "name": f"{verdict['guard']}{where}: "
                      f"{verdict['action']}", "at": verdict["at"],
                      "passed": verdict["passed"], "detail": "; ".join(verdict["reasons"])})
    for event in row["events"]:
        detail = event["detail"]
        kind = event["kind"]
        if kind == "attempt":
            end = _at(event["at"])
            ms = float(detail.get("ms") or 0)
            if end is None:
                continue
            marks.append({
                "kind": "tool", "name": f"{event['dependency']}.{detail.get('action')} "
                f"#{detail.get('attempt', 1)}", "start": _iso(end - timedelta(milliseconds=ms)),
                "end": _iso(end), "ms": ms, "step_id": event["step_id"],
                "outcome": detail.get("outcome"), "detail": detail.get("reason") or ""})
        elif kind in ("retry", "breaker", "rejected", "deadline", "fallback", "reuse",
                      "refresh", "reconcile", "decision"):
            text = ", ".join(f"{k}={v}" for k, v in detail.items()
                             if k not in ("ms", "result", "args") and v not in (None, ""))
            marks.append({"kind": kind, "name": f"{kind} {event['dependency'] or ''}".strip(),
                          "at": event["at"], "step_id": event["step_id"], "detail": text})
    return marks


async def timeline(graph: Pregel[Any, Any, Any, Any], thread_id: str) -> dict[str, Any]:
    """The thread's timeline as plain data: segments of spans and marks, in time order."""
    rows = await history(graph, thread_id)
    segments: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    previous_end: datetime | None = None
    for index, row in enumerate(rows):
        created = _at(row["created_at"])
        assert created is not None
        starts_turn = row["source"] == "input"
        resumed = index > 0 and bool(rows[index - 1]["interrupts"])
        marks = _marks(row)
        if current is None or starts_turn or resumed:
            begin = created
            if resumed and previous_end is not None:
                # The resumed step ran from the human's answer to this checkpoint.
                answered = [t for m in marks if m["kind"] == "decision" and (t := _at(m["at"]))]
                after = [t for m in marks if (t := _at(m.get("start") or m.get("at")))
                         and t >= previous_end]
                begin = min(answered or after, default=created)
            gap = (begin - previous_end).total_seconds() if previous_end else 0.0
            reason = ("a new request" if starts_turn else "an approval") if current else "start"
            current = {"start": _iso(begin), "end": _iso(created), "after_wait_s": gap,
                       "waited_for": reason, "spans": [], "marks": []}
            segments.append(current)
            if resumed:  # the resumed node ran on from the answer to this checkpoint
                current["spans"].extend(_node_spans(row, begin, created))
        else:
            current["spans"].extend(_node_spans(row, previous_end or created, created))
        current["marks"].extend(marks)
        for pending in row["interrupts"]:
            current["marks"].append({"kind": "approval", "name": "waiting for approval",
                                     "at": _iso(created), "detail": str(pending)})
        current["end"] = _iso(max(created, _at(current["end"]) or created))
        previous_end = created
    for segment in segments:  # marks may fall after the last checkpoint of their segment
        moments = [_at(m.get("end") or m.get("at")) for m in segment["marks"]]
        ends = [m for m in moments if m is not None] + [_at(segment["end"])]
        segment["end"] = _iso(max(m for m in ends if m is not None))
    return {"thread_id": thread_id, "steps": len(rows), "segments": segments,
            "start": segments[0]["start"] if segments else None,
            "end": segments[-1]["end"] if segments else None}
