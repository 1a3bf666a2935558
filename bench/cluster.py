"""Outgrowing one machine, measured: throughput, a carrier outage and a replica kill, one run.

    .venv/bin/python bench/cluster.py [--requests 48] [--skip-cluster]

(1) Throughput (requests/s, p50/p99 ms) at concurrency 1, 8 and 32 of the overhead bench's
three-worker request: Interlock in one process on SQLite and on Postgres, and bare LangGraph
(the same routing, `bench/overhead.py`) on the same two savers; then over HTTP through
langgraph_sdk, round-robin, on one Aegra replica and on three (`make cluster`).
(2) A carrier outage across three replicas: the carrier served over HTTP failing every call;
calls that reached it per request, counted by the carrier itself, against one process.
(3) A replica SIGKILLed mid-load: runs started, completed, taken over, lost; refunds paid twice.
Each cluster gets a database and a Redis prefix of its own, dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from overhead import MESSAGE, Work, bare_graph  # noqa: E402

from checkpoints.saver import open_saver  # noqa: E402
from graphs.cluster import POSTGRES, Cluster, down, up  # noqa: E402
from graphs.core.actors import STAFF  # noqa: E402
from graphs.keys import add_key  # noqa: E402
from graphs.runner import open_interlock  # noqa: E402
from graphs.settings import Settings  # noqa: E402

Run = Callable[[int], Awaitable[None]]


async def _load(run: Run, requests: int, concurrency: int) -> dict[str, float]:
    """`requests` runs, `concurrency` at a time: throughput and latency."""
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            started = time.perf_counter()
            await run(i)
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(requests)))
    wall = time.perf_counter() - started
    ordered = sorted(latencies)
    return {"rps": round(requests / wall, 1), "p50": round(statistics.median(ordered), 1),
            "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1)}


@contextmanager
def database() -> Iterator[str]:
    name = f"interlock_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{POSTGRES}/test", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        with psycopg.connect(f"{POSTGRES}/test", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def in_process(requests: int, levels: list[int]) -> dict[str, dict[int, dict[str, float]]]:
    out: dict[str, dict[int, dict[str, float]]] = {}
    with database() as url, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for backend, database_url in (("SQLite", None), ("Postgres", url)):
            settings = Settings(home=root / backend, database_url=database_url)
            async with AsyncExitStack() as stack:
                app = await stack.enter_async_context(open_interlock(settings))

                async def interlock(i: int, app: Any = app) -> None:
                    result = await app.run(MESSAGE)
                    assert result.status == "completed", result.answer

                saver = await stack.enter_async_context(open_saver(
                    database_url=database_url, path=root / backend / "bare.db"))
                graph = bare_graph(Work(settings.home), saver)

                async def bare(i: int, graph: Any = graph) -> None:
                    await graph.ainvoke({"message": MESSAGE},
                                        {"configurable": {"thread_id": f"b{uuid.uuid4().hex}"}},
                                        durability="sync")

                for name, run in ((f"Interlock, 1 process, {backend}", interlock),
                                  (f"bare LangGraph, 1 process, {backend}", bare)):
                    await _load(run, 4, 1)  # warm
                    out[name] = {c: await _load(run, requests, c) for c in levels}
    return out


@contextmanager
def served(dependency: str, home: Path) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "graphs.cli", "simulate", dependency, "--port", "0"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "INTERLOCK_HOME": str(home / dependency)})
    assert process.stdout is not None
    try:
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def cluster(replicas: int, home: Path, env: dict[str, str]) -> Iterator[Cluster]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    suffix = uuid.uuid4().hex[:10]
    spec = Cluster(replicas=replicas, port=18300 + (os.getpid() % 500) * 8,
                   database=f"interlock_bench_{suffix}", prefix=f"interlock-bench-{suffix}",
                   home=home, lease_s=6, config=ROOT / "bench" / "aegra-bench.json")
    try:
        up(spec)
        yield spec
    finally:
        down(spec)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        with psycopg.connect(f"{POSTGRES}/test", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{spec.database}" WITH (FORCE)')
        store = redis.Redis.from_url(spec.redis)
        for key in store.scan_iter(f"{spec.prefix}:*"):
            store.delete(key)


def _client(url: str, key: str) -> Any:
    from langgraph_sdk import get_client

    return get_client(url=url, api_key=key, timeout=120)


async def over_http(requests: int, levels: list[int], work: Path
                    ) -> dict[str, dict[int, dict[str, float]]]:
    out: dict[str, dict[int, dict[str, float]]] = {}
    for replicas in (1, 3):
        home = work / f"http-{replicas}"
        key = add_key(home / "api-keys.json", STAFF, label="bench")[1]
        with cluster(replicas, home, {"INTERLOCK_LIMITS_STAFF":
                                      "runs_per_minute=100000,runs_burst=10000,"
                                      "runs_in_flight=1000,requests_per_minute=100000,"
                                      "requests_burst=10000"}) as spec:
            clients = [_client(url, key) for url in spec.urls]

            for assistant, label in (("interlock", "Interlock"), ("bare", "bare LangGraph")):
                async def run(i: int, clients: list[Any] = clients,
                              assistant: str = assistant) -> None:
                    # Streamed: Aegra's `runs.wait` polls for the end of a run every 2 s
                    # (hard-coded in its worker executor), a floor that hides the rest.
                    client = clients[i % len(clients)]
                    last: Any = None
                    async for chunk in client.runs.stream(None, assistant, input={
                            "messages": [{"role": "user", "content": MESSAGE}]},
                            stream_mode="values"):
                        if chunk.event == "values":
                            last = chunk.data
                    assert "1042" in str(last), last

                await _load(run, 4, 1)
                name = f"{label}, {replicas} Aegra replica{'s' * (replicas > 1)}, Postgres"
                out[name] = {c: await _load(run, requests, c) for c in levels}
    return out


async def outage(requests: int, work: Path) -> dict[str, Any]:
    """Calls per request reaching a carrier that fails every call: 1 process vs 3 replicas."""
    out: dict[str, Any] = {}
    with served("carrier", work) as carrier:
        httpx.put(f"{carrier}/_sim/faults", json={"fail": 1.0}).raise_for_status()
        settings = Settings(home=work / "outage-1").with_url("carrier", carrier)
        async with open_interlock(settings) as app:
            before = httpx.get(f"{carrier}/_sim/stats").json()["calls"]
            for i in range(requests):
                await app.run(f"Where is my order {1001 + i % 50}?")
            calls = httpx.get(f"{carrier}/_sim/stats").json()["calls"] - before
        out["1 process"] = {"requests": requests, "carrier_calls": calls,
                            "per_request": round(calls / requests, 2)}
        home = work / "outage-3"
        key = add_key(home / "api-keys.json", STAFF, label="bench")[1]
        with cluster(3, home, {"INTERLOCK_CARRIER_URL": carrier}) as spec:
            clients = [_client(url, key) for url in spec.urls]
            before = httpx.get(f"{carrier}/_sim/stats").json()["calls"]

            async def ask(i: int) -> None:
                await clients[i % 3].runs.wait(None, "interlock", input={"messages": [
                    {"role": "user", "content": f"Where is my order {1001 + i % 50}?"}]})

            await _load(ask, requests, 8)
            calls = httpx.get(f"{carrier}/_sim/stats").json()["calls"] - before
        out["3 replicas"] = {"requests": requests, "carrier_calls": calls,
                             "per_request": round(calls / requests, 2)}
    return out


async def kill(requests: int, work: Path) -> dict[str, Any]:
    """A replica SIGKILLed while runs are under way: what became of every run and refund."""
    home = work / "kill"
    key = add_key(home / "api-keys.json", STAFF, label="bench")[1]
    orders = [1001, 1012, 1014, 1021, 1026, 1031, 1034, 1038]
    with served("payments", work) as payments, cluster(
            3, home, {"INTERLOCK_PAYMENTS_URL": payments}) as spec:
        clients = [_client(url, key) for url in spec.urls]
        live = [0, 1, 2]
        started: list[tuple[str, str]] = []
        work_items = [f"Refund $5 on order {o}" for o in orders] + [
            "Where is my order 1042?", "What is your return policy?"] * (requests // 2)
        taken: set[str] = set()
        for n, text in enumerate(work_items):
            client = clients[live[n % len(live)]]
            thread = await client.threads.create()
            run = await client.runs.create(thread["thread_id"], "interlock", input={
                "messages": [{"role": "user", "content": text}]})
            started.append((thread["thread_id"], run["run_id"]))
            if n == len(work_items) // 3:
                with psycopg.connect(spec.database_url) as conn:
                    running = conn.execute("SELECT run_id FROM runs WHERE status = 'running'"
                                           ).fetchall()
                pids = json.loads((spec.home / "replicas.json").read_text())["pids"]
                os.killpg(int(pids["1"]), signal.SIGKILL)
                killed_at = time.monotonic()
                live.remove(1)
                taken = {r[0] for r in running}
        statuses: dict[str, str] = {}
        for _ in range(600):
            for thread_id, run_id in started:
                if statuses.get(run_id) not in (None, "pending", "running"):
                    continue
                statuses[run_id] = (await clients[0].runs.get(thread_id, run_id))["status"]
            if all(s not in ("pending", "running") for s in statuses.values()):
                break
            await asyncio.sleep(0.5)
        settled_s = time.monotonic() - killed_at
        twice = 0
        for order in orders:
            refunds = httpx.get(f"{payments}/v1/refunds", params={"order_id": order}).json()
            twice += sum(1 for r in refunds["refunds"] if r["amount_cents"] == 500) > 1
    counts = {s: sum(1 for v in statuses.values() if v == s) for s in set(statuses.values())}
    return {"runs_started": len(started), "by_status": counts,
            "running_at_the_kill": len(taken), "lost": len(started) - counts.get("success", 0),
            "refunds_paid_twice": twice, "all_settled_after_s": round(settled_s, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--levels", default="1,8,32")
    parser.add_argument("--skip-cluster", action="store_true")
    parser.add_argument("--parts", default="local,http,outage,kill",
                        help="which parts to run (comma-separated)")
    args = parser.parse_args()
    levels = [int(n) for n in args.levels.split(",")]

    async def everything() -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            parts = set(args.parts.split(",")) - ({"http", "outage", "kill"}
                                                  if args.skip_cluster else set())
            result: dict[str, Any] = {"throughput": {}}
            if "local" in parts:
                result["throughput"].update(await in_process(args.requests, levels))
            if "http" in parts:
                result["throughput"].update(await over_http(args.requests, levels, work))
            if "outage" in parts:
                result["outage"] = await outage(args.requests, work)
            if "kill" in parts:
                result["kill"] = await kill(args.requests, work)
            return result

    result = asyncio.run(everything())
    print("| variant | " + " | ".join(f"c={c}: req/s, p50, p99 ms" for c in levels) + " |")
    print("|---|" + "---|" * len(levels))
    for name, by_level in result["throughput"].items():
        cells = [f"{by_level[c]['rps']}, {by_level[c]['p50']}, {by_level[c]['p99']}"
                 for c in levels]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for key in ("outage", "kill"):
        if key in result:
            print(f"\n{key}: {json.dumps(result[key])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
