"""`interlock trace` and `interlock graph`: built from checkpoints, offline, self-contained."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from checkpoints.timeline import timeline
from graphs.cli import main
from graphs.core.clock import parse_iso
from graphs.runner import Interlock
from graphs.settings import FaultSpec, Settings
from graphs.supervisor import build_graph
from graphs.views import graph_html, graph_mermaid, timeline_html


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def offline(page: str) -> Tags:
    parser = Tags()
    parser.feed(page)
    assert not [t for t, _ in parser.tags if t in ("script", "link", "img", "iframe")]
    assert not re.search(r"(src|href)\s*=", page)
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page
    return parser


async def test_trace_is_a_timeline_of_nodes_tools_verdicts_and_approvals(app: Interlock) -> None:
    waiting = await app.run("Where is order 1001, and please refund $60 on it")
    await app.resume(waiting.thread_id, approve=True)
    assert app.toolbox.carrier_sim is not None
    app.toolbox.carrier_sim.faults.set(FaultSpec(fail=1.0))
    await app.run("Where is order 1042?", thread_id=waiting.thread_id)
    data = await timeline(app.graph, waiting.thread_id)
    segments = data["segments"]
    assert [s["waited_for"] for s in segments] == ["start", "an approval", "a new request"]
    first, resumed, second = segments
    assert {"intake_guard", "planner", "plan_guard", "supervisor", "orders", "shipping",
            "policy", "fact_guard"} <= {s["name"] for s in first["spans"]}
    assert any(m["kind"] == "approval" for m in first["marks"])
    assert "refunds" in {s["name"] for s in resumed["spans"]}
    assert any(m["kind"] == "decision" for m in resumed["marks"])
    assert any(m["kind"] == "tool" and m["name"] == "payments.refund #1" for m in resumed["marks"])
    failed = [m for m in second["marks"] if m["kind"] == "tool" and m["outcome"] == "error"]
    assert len(failed) == app.settings.policy("carrier").attempts
    assert any(m["kind"] == "retry" for m in second["marks"])
    verdicts = [m["name"] for s in segments for m in s["marks"] if m["kind"] == "verdict"]
    assert "approval t1.s4: allow" in verdicts and "output: allow" in verdicts
    for segment in segments:
        for span in segment["spans"]:
            assert span["start"] <= span["end"]
    page = timeline_html(data)
    parsed = offline(page)
    bars = [a for t, a in parsed.tags if t == "div" and "bar" in str(a.get("class"))]
    assert len(bars) >= len(first["spans"]) + len(second["spans"])
    assert page.count("<section>") == 3 and "payments.refund #1" in page
    json.dumps(data)


def test_graph_views_draw_every_node(settings: Settings) -> None:
    graph = build_graph(settings=settings)
    mermaid = graph_mermaid(graph)
    page = graph_html(graph)
    offline(page)
    assert "<svg" in page
    for node in ("intake_guard", "planner", "plan_guard", "supervisor", "orders", "shipping",
                 "policy", "refunds", "fact_guard", "responder", "output_guard", "reconciler"):
        assert node in mermaid and f">{node}<" in page


def test_cli_trace_and_graph(settings: Settings, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("INTERLOCK_HOME", str(settings.home))
    assert main(["run", "Where is my order 1042?", "--thread", "view-1"]) == 0
    assert main(["trace", "view-1", "--html", str(tmp_path / "t.html")]) == 0
    offline((tmp_path / "t.html").read_text())
    assert main(["trace", "view-1", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"segments"' in out
    assert main(["trace", "view-1"]) == 0
    assert "carrier.track #1" in capsys.readouterr().out
    assert main(["graph", "--html", str(tmp_path / "g.html")]) == 0
    assert "<svg" in (tmp_path / "g.html").read_text()
    assert main(["graph"]) == 0
    assert "graph TD" in capsys.readouterr().out
    assert main(["trace", "no-such-thread"]) == 2


async def test_workers_side_by_side_keep_their_own_durations(app: Interlock) -> None:
    # The carrier answers slowly; the order lookup beside it must not be drawn as long.
    assert app.toolbox.carrier_sim is not None
    app.toolbox.carrier_sim.faults.set(FaultSpec(latency=0.3))
    result = await app.run("Where is order 1042?")
    [segment] = (await timeline(app.graph, result.thread_id))["segments"]

    def took(name: str) -> float:
        [span] = [s for s in segment["spans"] if s["name"] == name]
        return (parse_iso(span["end"]) - parse_iso(span["start"])).total_seconds()

    [orders] = [s for s in segment["spans"] if s["name"] == "orders"]
    [shipping] = [s for s in segment["spans"] if s["name"] == "shipping"]
    assert orders["step"] == shipping["step"]  # one superstep
    assert (orders["step_id"], shipping["step_id"]) == ("t1.s1", "t1.s2")
    assert took("shipping") >= 0.3 and took("orders") < 0.15, (took("orders"),
                                                               took("shipping"))
    [call] = [m for m in segment["marks"] if m["name"] == "carrier.track #1"]
    assert shipping["start"] <= call["start"] and call["end"] <= shipping["end"]
