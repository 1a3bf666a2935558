"""One customer floods the LangGraph server; another customer's latency, quiet and during it.

A real `langgraph dev` serves the repository's langgraph.json (keys, edge, auth handlers).
Customer 12 asks "Where is order 1053?" one request at a time (a new thread each time: create
it, run on it, wait for the answer), first with the server quiet,
then while customer 11 floods it the way issue 14 found it could: 200 stateless runs at once
every 1.5 s, a request of 100,000 tiny messages (3 MB), a 10 MB message, and a refund of
"$" followed by 8,000 digits. Prints the bystander's p50/p99 quiet and under the flood, their
ratio, and what the flood's requests were answered. The bystander asks 100 times a phase,
more than a customer's default 20 runs a minute allow, so both customers run with the rates
raised (`--customer-limits`; runs in flight stay at the default 2). `--root` serves another
checkout instead (the before of a before/after). Run: `.venv/bin/python bench/flood.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from graphs.core.state import Actor  # noqa: E402
from tests.e2e.devserver import ROOT, ask, dev_server  # noqa: E402


def _ask(text: str) -> dict[str, Any]:
    return {"assistant_id": "interlock", "input": ask(text)}


async def _bystander(http: httpx.AsyncClient, n: int, failed: Counter[str]) -> list[float]:
    """Latencies of `n` requests, one at a time; a failed one counts with the time it took."""
    took: list[float] = []
    for _ in range(n):
        start = time.perf_counter()
        try:
            thread = (await http.post("/threads", json={})).json()["thread_id"]
            answer = await http.post(f"/threads/{thread}/runs/wait",
                                     json=_ask("Where is order 1053?"))
            if answer.status_code != 200:
                failed[f"HTTP {answer.status_code}"] += 1
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            failed[type(exc).__name__] += 1
        took.append((time.perf_counter() - start) * 1000)
    return took


async def _flood(url: str, key: str, stop: Any) -> dict[str, int]:
    """The flood, until `stop` (a process event) is set; what its requests were answered."""
    seen: Counter[str] = Counter()
    tiny = json.dumps({"assistant_id": "interlock", "input": {"messages": [
        {"role": "user", "content": "x"} for _ in range(100_000)]}}).encode()
    huge = json.dumps({"assistant_id": "interlock", "input": {"messages": [
        {"role": "user", "content": "a" * 10_000_000},
        {"role": "user", "content": "hi"}]}}).encode()
    digits = json.dumps(_ask("Refund $" + "8" * 8000)).encode()
    status = json.dumps(_ask("Where is order 1015?")).encode()
    headers = {"x-api-key": key, "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(120), headers=headers,
                                 limits=httpx.Limits(max_connections=300)) as http:

        async def one(name: str, body: bytes) -> None:
            try:
                answer = await http.post("/runs/wait", content=body)
                seen[f"{name} {answer.status_code}"] += 1
            except httpx.HTTPError as exc:
                seen[f"{name} {type(exc).__name__}"] += 1

        while not stop.is_set():
            wave = [one("stateless run", status) for _ in range(200)]
            wave += [one("100k messages", tiny), one("10 MB message", huge),
                     one("8,000-digit amount", digits)]
            started = time.perf_counter()
            await asyncio.gather(*wave)
            await asyncio.sleep(max(0.0, 1.5 - (time.perf_counter() - started)))
    return dict(seen)


def _flood_process(url: str, key: str, stop: Any, out: Path) -> None:
    """The flood in a process of its own: its client's work does not slow the bystander's."""
    out.write_text(json.dumps(asyncio.run(_flood(url, key, stop))))


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(url: str, keys: dict[str, str], n: int, workdir: Path) -> dict[str, Any]:
    timeout = httpx.Timeout(120)
    async with httpx.AsyncClient(base_url=url, timeout=timeout,
                                 headers={"x-api-key": keys["bystander"]}) as quiet:
        calm_failed: Counter[str] = Counter()
        busy_failed: Counter[str] = Counter()
        await _bystander(quiet, 5, Counter())  # warm-up
        calm = await _bystander(quiet, n, calm_failed)
        answers = workdir / "flood.json"
        processes = multiprocessing.get_context("spawn")
        stop = processes.Event()
        flood = processes.Process(target=_flood_process,
                                  args=(url, keys["flooder"], stop, answers))
        flood.start()
        await asyncio.sleep(3.0)  # the flood is under way
        busy = await _bystander(quiet, n, busy_failed)
        stop.set()
        await asyncio.to_thread(flood.join, 120)
    seen = json.loads(answers.read_text()) if answers.exists() else {
        "(the flood process was stopped before it reported)": 1}
    return {"quiet_p50_ms": statistics.median(calm), "quiet_p90_ms": _p(calm, 0.9),
            "quiet_p99_ms": _p(calm, 0.99), "flood_p50_ms": statistics.median(busy),
            "flood_p90_ms": _p(busy, 0.9), "flood_p99_ms": _p(busy, 0.99),
            "p99_ratio": _p(busy, 0.99) / _p(calm, 0.99), "flood_answers": seen,
            "bystander_failed_quiet": dict(calm_failed),
            "bystander_failed_flood": dict(busy_failed),
            "quiet_ms": [round(x, 1) for x in calm], "flood_ms": [round(x, 1) for x in busy]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100, help="bystander requests per phase")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to serve")
    parser.add_argument("--customer-limits", default="runs_per_minute=600,runs_burst=120,"
                        "requests_per_minute=6000,requests_burst=600",
                        help="INTERLOCK_LIMITS_CUSTOMER for the served checkout")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    actors = {"bystander": Actor(kind="customer", customer_id=12),
              "flooder": Actor(kind="customer", customer_id=11)}
    with tempfile.TemporaryDirectory(prefix="interlock-flood-") as tmp, \
            dev_server(Path(tmp), actors, root=args.root.resolve(),
                       env={"INTERLOCK_LIMITS_CUSTOMER": args.customer_limits}) as server:
        figures = asyncio.run(measure(server["url"], server["keys"], args.requests, Path(tmp)))
    figures.update(root=str(args.root), requests=args.requests, python=platform.python_version(),
                   customer_limits=args.customer_limits)
    if args.json:
        print(json.dumps(figures))
        return
    for phase in ("quiet", "flood"):
        label = "quiet:      " if phase == "quiet" else "under flood:"
        print(f"bystander, {label} p50 {figures[phase + '_p50_ms']:8.1f} ms   p90 "
              f"{figures[phase + '_p90_ms']:8.1f} ms   p99 {figures[phase + '_p99_ms']:8.1f} ms")
    print(f"p99 under flood / quiet: {figures['p99_ratio']:.2f}x (target <= 1.5x); bystander "
          f"requests that failed: quiet {figures['bystander_failed_quiet'] or 0}, under flood "
          f"{figures['bystander_failed_flood'] or 0}")
    for what, count in sorted(figures["flood_answers"].items()):
        print(f"  flood: {what}: {count}")


if __name__ == "__main__":
    main()
