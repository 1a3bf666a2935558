"""Readiness side by side: `interlock assess` on four graphs, figures and wall time as a table.

    .venv/bin/python bench/readiness.py [--hang-cap 10] [--isolation-cap 2] [--json FILE]

Interlock (its carrier over HTTP, answered in-process), a langgraph-supervisor team, a prebuilt
ReAct agent under a node RetryPolicy, and a bare StateGraph (`examples/readiness/`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ASK = ["Where is my order 1042?", "What is your return policy?", "Refund $120 on order 1001"]
INPUTS = {"Interlock": [{"messages": [{"role": "user", "content": text}]} for text in ASK]}
"""Interlock also gets a refund above the limit: its interrupt before the payment is checked."""
TARGETS = {
    "Interlock": "langgraph.json",
    "langgraph-supervisor": "examples/readiness/supervisor_team.py:graph",
    "ReAct + RetryPolicy": "examples/readiness/react_agent.py:graph",
    "bare StateGraph": "examples/readiness/bare_graph.py:graph",
}


def _figures(report: Any) -> dict[str, str]:
    found = {f.id: f for f in report.findings}
    measured = report.measurements

    def cell(check: str, text: str) -> str:
        return f"{found[check].status}: {text}" if check in found else "-"

    amplification = measured.get("resilience.amplification", {}).get("by_host", {})
    worst = max(amplification.items(), key=lambda kv: kv[1]["mean"], default=None)
    breaking = measured.get("resilience.breaking", {}).get("calls_per_request", [])
    deadlines = measured.get("resilience.deadlines", {})
    seconds = deadlines.get("seconds", [])
    isolation = measured.get("resilience.isolation", [])
    return {
        "amplification": cell("resilience.amplification",
                              f"{worst[1]['mean']:.1f} attempts per logical call ({worst[0]})"
                              if worst else "no call"),
        "breaking": cell("resilience.breaking",
                         f"{sum(breaking[:10])} calls in requests 1-10, "
                         f"{sum(breaking[10:])} in 11-20"),
        "deadlines": cell("resilience.deadlines",
                          f"not back within {deadlines.get('cap_s', 0):g} s"
                          if any(s is None for s in seconds) else
                          f"back within {max(seconds, default=0):.2f} s"),
        "isolation": cell("resilience.isolation",
                          f"{sum(len(o['hurt']) for o in isolation)} hurt in "
                          f"{len(isolation)} outages" if isolation else "not measurable"),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hang-cap", type=float, default=10.0)
    parser.add_argument("--isolation-cap", type=float, default=2.0)
    parser.add_argument("--json", type=Path, help="also write every scorecard here")
    args = parser.parse_args()
    os.chdir(ROOT)
    os.environ.setdefault("INTERLOCK_HOME", tempfile.mkdtemp(prefix="interlock-readiness-"))
    os.environ.setdefault("INTERLOCK_CARRIER_URL", "http://carrier.example")
    from graphs.assess import assess

    rows, cards = [], {}
    for name, target in TARGETS.items():
        started = time.perf_counter()
        card = await assess(target, inputs=INPUTS.get(name), hang_cap_s=args.hang_cap,
                            isolation_cap_s=args.isolation_cap)
        took = time.perf_counter() - started
        [report] = card.graphs
        cards[name] = card.to_json()
        counts = ", ".join(f"{n} {s}" for s, n in report.counts().items() if n)
        rows.append((name, counts, _figures(report), took))
    print("| graph | scorecard | amplification | breaking | deadlines | isolation | wall s |")
    print("|---|---|---|---|---|---|---:|")
    for name, counts, figures, took in rows:
        print(f"| {name} | {counts} | {figures['amplification']} | {figures['breaking']} | "
              f"{figures['deadlines']} | {figures['isolation']} | {took:.1f} |")
    checks = list(dict.fromkeys(f["id"] for card in cards.values() for g in card["graphs"]
                                for fs in g["areas"].values() for f in fs if "/" not in f["id"]))
    print("\n| check | " + " | ".join(cards) + " |")
    print("|---|" + "---|" * len(cards))
    for check in checks:
        cells = []
        for card in cards.values():
            found = [f for fs in card["graphs"][0]["areas"].values() for f in fs
                     if f["id"] == check]
            cells.append(found[0]["status"] if found else "-")
        print(f"| `{check}` | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(cards, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
