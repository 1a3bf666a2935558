"""The `interlock assess` scorecard as one self-contained HTML page."""

from __future__ import annotations

import re
from typing import Any

from graphs.assess.html import scorecard_html
from graphs.assess.scorecard import AREAS

# The findings and measurements of two real runs (`interlock assess`, probes on), evidence cut.
INTERLOCK = [("state.reducers", "pass", 0), ("state.checkpointer", "warn", None),
             ("state.interrupts", "n/a", None), ("ordering.routes", "pass", 0),
             ("ordering.reachable", "warn", 1), ("ordering.cycles", "warn", None),
             ("resilience.node_retries", "pass", 1), ("resilience.timeouts", "warn", 4),
             ("resilience.error_handlers", "pass", 4), ("resilience.amplification", "warn", 2.4),
             ("resilience.breaking", "pass", 7), ("resilience.deadlines", "pass", 8.7),
             ("resilience.isolation", "pass", 0), ("traces.calls", "pass", 0),
             ("traces.redaction", "pass", 0)]
REACT = [("state.reducers", "pass", 0), ("ordering.cycles", "warn", None),
         ("resilience.amplification", "warn", 3.0), ("resilience.breaking", "fail", 10),
         ("resilience.deadlines", "fail", 2), ("resilience.isolation", "pass", 0),
         ("traces.redaction", "fail", 3), ("node/tools/ordering.routes", "pass", 0)]
BASE = [0.0088, 0.0133, 0.0103]
INTERLOCK_MEASURED: dict[str, Any] = {
    "resilience.amplification": {"calls_per_request": [4, 0, 4, 0, 4], "first_attempts": 12,
                                 "sdk_retries": 0, "hosts": {"carrier.example": 12}},
    "resilience.breaking": {"calls_per_request": [4, 0, 4, 0, 4, 0, 3] + [0] * 13,
                            "called_before": 0},
    "resilience.deadlines": {"seconds": [8.7009, 0.0134], "cap_s": 10.0},
    "baseline": {"seconds": [0.082, 0.0089, 0.0149, 0.0133, 0.0157, 0.0103],
                 "hosts": [["carrier.example"], [], ["carrier.example"], [], [], []],
                 "errors": [None] * 6},
    "traces": {"spans": 38, "calls": 1, "requests": 2},
    "resilience.isolation": [
        {"host": "carrier.example", "mode": "failing", "baseline_s": BASE,
         "seconds": [0.0413, 0.0386, 0.0371], "hurt": []},
        {"host": "carrier.example", "mode": "hanging", "baseline_s": BASE,
         "seconds": [0.033, 0.0309, 0.0289], "hurt": []}]}
REACT_MEASURED: dict[str, Any] = {
    "resilience.amplification": {"calls_per_request": [3] * 5, "first_attempts": 5,
                                 "sdk_retries": 10, "hosts": {"model.example": 15}},
    "resilience.breaking": {"calls_per_request": [3] * 20, "called_before": 0},
    "resilience.deadlines": {"seconds": [None, None], "cap_s": 2},
    "traces": {"spans": 22, "calls": 4, "requests": 2},
    "resilience.isolation": [
        {"host": "carrier.example", "mode": "failing", "baseline_s": BASE,
         "seconds": [0.171, 0.17, None], "hurt": ["route 5 not back within 5 s"]},
        {"host": "carrier.example", "mode": "hanging", "baseline_s": BASE,
         "seconds": [0.0716, 0.0697, 0.0681], "hurt": []}]}
CHARTS = 5  # amplification, breaking, deadlines, isolation failing, isolation hanging


def graph(name: str, rows: list[tuple[str, str, float | None]],
          measurements: dict[str, Any], evidence: str = "found {id}") -> dict[str, Any]:
    found: dict[str, list[dict[str, Any]]] = {area: [] for area in AREAS}
    for check, status, figure in rows:
        area = check.rsplit("/", 1)[-1].split(".")[0]
        found[area].append({"id": check, "area": area, "title": f"title of {check}",
                            "status": status, "evidence": evidence.format(id=check),
                            "figure": figure,
                            "fix": "" if status == "pass" else f"fix for {check}"})
    counts = {s: sum(1 for _, st, _ in rows if st == s) for s in ("pass", "warn", "fail", "n/a")}
    return {"name": name, "counts": counts, "areas": found, "measurements": measurements,
            "seconds": 14.08}


def card(*graphs: dict[str, Any], checks: tuple[str, ...] = ("static", "probes"),
         target: str = "langgraph.json") -> dict[str, Any]:
    return {"target": target, "checks_run": list(checks), "areas": dict(AREAS),
            "graphs": list(graphs)}


def assert_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>") and page.count("<html") == 1
    assert page.rstrip().endswith("</html>")
    for external in ("http://", "https://", "src=", "href=", "url(", "@import", "<script",
                     "<link", "<img"):
        assert external not in page.lower(), external


def test_one_graph_is_one_self_contained_page_with_every_finding_and_chart() -> None:
    page = scorecard_html(card(graph("interlock", INTERLOCK, INTERLOCK_MEASURED)))
    assert_self_contained(page)
    for check, _, _ in INTERLOCK:
        assert f"<code>{check}</code>" in page
    for status in ("pass", "warn", "n/a"):
        assert f'">{status}</span>' in page  # a text label in the badge, not colour alone
    assert page.count("<svg") == CHARTS
    for title in ("Retry amplification", "Circuit breaking", "Deadlines",
                  "Isolation: carrier.example failing", "Isolation: carrier.example hanging"):
        assert title in page
    assert "12 first attempts by the graph + 0 retries by the SDK" in page
    assert "cap 10 seconds" in page and "not back" not in page
    assert "Graphs side by side" not in page
    assert page.count("<b>fix:</b>") == sum(1 for _, s, _ in INTERLOCK if s != "pass")


def test_requests_not_back_are_drawn_to_the_cap_and_marked() -> None:
    page = scorecard_html(card(graph("graph", REACT, REACT_MEASURED)))
    assert_self_contained(page)
    assert "cap 2 seconds" in page
    assert page.count(">not back</text>") == 3  # two deadlines, one isolation
    assert "1 of 3 hurt; route 5 not back within 5 s" in page
    assert '">fail</span>' in page


def test_hostile_text_is_escaped() -> None:
    hostile = "<script>alert(\"x\")</script> & 'quoted' <- writer"
    measured = {"resilience.isolation": [{"host": hostile, "mode": "failing", "baseline_s": [1],
                                          "seconds": [2], "hurt": [hostile]}],
                "resilience.amplification": {"calls_per_request": [1], "hosts": {hostile: 1}}}
    page = scorecard_html(card(graph(hostile, [("traces.calls", "fail", 1)], measured,
                                     evidence=hostile), target=hostile))
    assert_self_contained(page)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;quoted&#x27; " \
           "&lt;- writer" in page


def test_cards_without_measurements_render_without_charts() -> None:
    static = scorecard_html(card(graph("g", REACT, {}), checks=("static",)))
    assert_self_contained(static)
    assert "<svg" not in static and "Measurements" not in static
    assert all(f"<code>{check}</code>" in static for check, _, _ in REACT)
    assert "checks run: static ·" in static
    bare = scorecard_html({"target": "t", "graphs": [{"name": "g", "measurements": None}]})
    assert_self_contained(bare)
    assert "<svg" not in bare
    assert_self_contained(scorecard_html({}))


def test_partial_and_malformed_measurements_draw_what_they_can() -> None:
    measured = {"resilience.deadlines": {"seconds": [None, 1.5, "x"]},  # no cap
                "resilience.breaking": {"calls_per_request": []},
                "resilience.amplification": [1, 2],
                "resilience.isolation": [None, {"host": "h"}],
                "traces": {"spans": None},
                "node/sub/resilience.breaking": {"calls_per_request": [2, 0, 0, 0]}}
    page = scorecard_html(card(graph("g", REACT, measured)))
    assert_self_contained(page)
    assert page.count("<svg") == 2
    assert "Deadlines: seconds to come back" in page and ">not back</text>" in page
    assert "node/sub: Circuit breaking" in page
    assert "traces probe: — spans" in page


def test_several_graphs_are_compared_side_by_side() -> None:
    page = scorecard_html(card(graph("interlock", INTERLOCK, INTERLOCK_MEASURED),
                               graph("react", REACT, REACT_MEASURED)))
    assert_self_contained(page)
    assert "Graphs side by side" in page
    table = page[page.index('<table class="side">'):]
    table = table[:table.index("</table>")]
    assert re.search(r"<th><code>interlock</code></th><th><code>react</code></th>", table)
    for check in {c for c, _, _ in INTERLOCK + REACT}:
        assert f"<code>{check}</code>" in table
    assert table.count("<tr>") == 1 + len({c for c, _, _ in INTERLOCK + REACT})
    assert "<td>—</td>" in table  # a check only one graph has
    assert page.count("<svg") == 4 + 2 * CHARTS
    for title in ("attempts per logical call (worst dependency)",
                  "calls in the last half of the run", "worst seconds to come back",
                  "requests hurt"):
        assert title in page
    assert "not back: drawn at the probe&#x27;s cap (react 2 s)" in page
