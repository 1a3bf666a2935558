"""Several replicas on Aegra, Postgres and Redis (`make cluster`), driven through langgraph_sdk.

A thread created on one replica is read, run, streamed, interrupted and resumed on the others;
a replica SIGKILLed in the middle of a mixed load loses no run and pays no refund twice. The
cluster gets a database, a Redis key prefix and a home of its own, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from langgraph_sdk import get_client

from graphs.cluster import POSTGRES, ROOT, Cluster, down, start_replica, up
from graphs.core.actors import STAFF, Actor
from graphs.keys import add_key

AEGRA = ROOT / ".aegra-venv" / "bin" / "python"


def _free_run(count: int) -> int:
    """A first port of `count` free ones in a row."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + count > 65000:
            continue
        try:
            for n in range(count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", base + n))
        except OSError:
            continue
        return base
    raise RuntimeError("no free ports")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not AEGRA.exists():
        pytest.fail("no Aegra environment: `make cluster-install` (make test does it)")
    home = tmp_path_factory.mktemp("cluster")
    keys = {name: add_key(home / "api-keys.json", actor, label=name)[1]
            for name, actor in {"staff": STAFF,
                                "c3": Actor(kind="customer", customer_id=3),
                                "c7": Actor(kind="customer", customer_id=7),
                                "c9": Actor(kind="customer", customer_id=9)}.items()}
    payments = subprocess.Popen(
        [sys.executable, "-m", "graphs.cli", "simulate", "payments", "--port", "0"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "INTERLOCK_HOME": str(home / "payments")})
    assert payments.stdout is not None
    payments_url = payments.stdout.readline().strip()
    saved = os.environ.get("INTERLOCK_PAYMENTS_URL")
    os.environ["INTERLOCK_PAYMENTS_URL"] = payments_url  # the replicas' environment
    suffix = uuid.uuid4().hex[:10]
    spec = Cluster(replicas=3, port=_free_run(3), database=f"interlock_cluster_{suffix}",
                   redis="redis://127.0.0.1:6379/0", prefix=f"interlock-test-{suffix}",
                   home=home, lease_s=6)
    try:
        urls = up(spec)
        yield {"spec": spec, "urls": urls, "keys": keys, "payments": payments_url}
    finally:
        down(spec)
        if saved is None:
            os.environ.pop("INTERLOCK_PAYMENTS_URL", None)
        else:
            os.environ["INTERLOCK_PAYMENTS_URL"] = saved
        payments.terminate()
        payments.wait(timeout=10)
        with psycopg.connect(f"{POSTGRES}/test", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{spec.database}" WITH (FORCE)')
        store = redis.Redis.from_url(spec.redis)
        for key in store.scan_iter(f"{spec.prefix}:*"):
            store.delete(key)


def ask(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def restart(spec: Cluster, n: int, key: str) -> Any:
    """Start replica `n` again (the tests after a kill use every replica); a client of it."""
    state = json.loads((spec.home / "replicas.json").read_text())
    state["pids"][str(n)] = start_replica(spec, n)
    (spec.home / "replicas.json").write_text(json.dumps(state))
    client = get_client(url=spec.urls[n], api_key=key)
    for _ in range(120):
        try:
            await client.threads.search(limit=1)
            return client
        except Exception:
            await asyncio.sleep(0.5)
    raise AssertionError(f"replica {n} did not come back")


def last(values: Any) -> str:
    messages = (values or {}).get("messages") or [{}]
    return str(messages[-1].get("content", ""))


async def test_a_thread_is_served_by_every_replica(cluster: dict[str, Any]) -> None:
    a, b, c = cluster["urls"]
    keys = cluster["keys"]
    on = {(url, who): get_client(url=url, api_key=keys[who]) for url in (a, b, c)
          for who in keys}
    thread = await on[a, "c7"].threads.create()
    done = await on[b, "c7"].runs.wait(thread["thread_id"], "interlock",
                                       input=ask("Where is my order 1042?"))
    assert "1042" in last(done)
    events = [chunk.event async for chunk in on[c, "c7"].runs.stream(
        thread["thread_id"], "interlock", input=ask("What is your return policy?"),
        stream_mode="updates")]
    assert "updates" in events
    state = await on[a, "staff"].threads.get_state(thread["thread_id"])  # staff, any replica
    assert len(state["values"]["messages"]) == 4
    for url in (a, b, c):  # another customer: not found, everywhere
        with pytest.raises(Exception) as raised:
            await on[url, "c9"].threads.get_state(thread["thread_id"])
        assert "404" in str(raised.value) or "not found" in str(raised.value).lower()
    assert thread["thread_id"] not in {t["thread_id"] for t in
                                       await on[b, "c9"].threads.search()}


async def test_an_approval_given_on_one_replica_resumes_a_run_started_on_another(
        cluster: dict[str, Any]) -> None:
    a, b, _ = cluster["urls"]
    keys = cluster["keys"]
    customer = get_client(url=a, api_key=keys["c3"])  # order 1011 is customer 3's
    staff = get_client(url=b, api_key=keys["staff"])
    def paid() -> list[int]:
        return [r["amount_cents"] for r in httpx.get(
            f"{cluster['payments']}/v1/refunds", params={"order_id": 1011}).json()["refunds"]]

    before = paid()
    thread = await customer.threads.create()
    await customer.runs.wait(thread["thread_id"], "interlock",
                             input=ask("Refund $60 on order 1011"))
    state = await staff.threads.get_state(thread["thread_id"])
    [waiting] = [i for task in state["tasks"] for i in task.get("interrupts", [])]
    assert waiting["value"]["amount_cents"] == 6000
    done = await staff.runs.wait(thread["thread_id"], "interlock", command={
        "resume": {"approved": True, "digest": waiting["value"]["digest"],
                   "note": "checked"}})
    assert "refunded $60.00 on order 1011" in last(done)
    assert paid() == [*before, 6000]


async def test_a_replica_killed_mid_load_loses_no_run_and_pays_nothing_twice(
        cluster: dict[str, Any]) -> None:
    spec: Cluster = cluster["spec"]
    urls, keys = cluster["urls"], cluster["keys"]
    # Refunds under the limit, one per order (each is paid at once, by staff), and customers'
    # questions, spread round-robin over the replicas.
    orders = (1001, 1012, 1014, 1021, 1026)
    work = [("staff", f"Refund $5 on order {order}") for order in orders] + [
        ("c7", "Where is my order 1042?"), ("c9", "What is your return policy?")] * 4
    live = list(urls)
    replicas = itertools.count()
    started: list[tuple[str, str, str]] = []
    for n, (who, text) in enumerate(work):
        # A client of the killed replica goes to another one, as behind a load balancer.
        client = get_client(url=live[next(replicas) % len(live)], api_key=keys[who])
        thread = await client.threads.create()
        run = await client.runs.create(thread["thread_id"], "interlock", input=ask(text))
        started.append((who, thread["thread_id"], run["run_id"]))
        if n == 5:  # some runs are under way on every replica: kill one
            victim = int(json.loads((spec.home / "replicas.json").read_text())["pids"]["1"])
            os.killpg(victim, signal.SIGKILL)
            live.remove(urls[1])
    survivors = [u for n, u in enumerate(urls) if n != 1]
    statuses: dict[str, str] = {}
    for _ in range(240):  # a dead replica's runs are taken over when their lease lapses
        for who, thread_id, run_id in started:
            if statuses.get(run_id) in ("success", "error", "interrupted", "timeout"):
                continue
            client = get_client(url=survivors[0], api_key=keys[who])
            statuses[run_id] = (await client.runs.get(thread_id, run_id))["status"]
        if all(s in ("success", "error", "interrupted", "timeout") for s in statuses.values()):
            break
        await asyncio.sleep(0.5)
    assert sorted(set(statuses.values())) == ["success"], statuses
    for order in orders:
        async with httpx.AsyncClient() as http:
            refunds = (await http.get(f"{cluster['payments']}/v1/refunds",
                                      params={"order_id": order})).json()["refunds"]
        mine = [r for r in refunds if r["amount_cents"] == 500]
        assert len(mine) == 1, (order, refunds)  # paid, and once
    with psycopg.connect(spec.database_url) as conn:
        stuck = conn.execute("SELECT count(*) FROM runs WHERE status IN ('pending', "
                             "'running')").fetchone()
    assert stuck is not None and stuck[0] == 0
    # The killed replica comes back and serves again.
    client = await restart(spec, 1, keys["c7"])
    thread = await client.threads.create()
    done = await client.runs.wait(thread["thread_id"], "interlock",
                                  input=ask("Where is my order 1042?"))
    assert "1042" in last(done)


def test_the_cluster_is_on_the_shared_stores(cluster: dict[str, Any]) -> None:
    spec: Cluster = cluster["spec"]
    with psycopg.connect(spec.database_url) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()}
    assert {"checkpoints", "effects", "thread", "runs"} <= tables
    assert not (Path(spec.home) / "checkpoints.db").exists()
    assert not (Path(spec.home) / "effects.db").exists()


async def test_a_replica_killed_while_paying_pays_once(cluster: dict[str, Any]) -> None:
    """The kill lands while the payment request is at the payments service."""
    spec: Cluster = cluster["spec"]
    urls, keys, payments = cluster["urls"], cluster["keys"], cluster["payments"]
    order = 1034  # customer 6's, delivered four days ago: $5 is under every limit
    async with httpx.AsyncClient() as http:
        (await http.put(f"{payments}/_sim/faults", json={"latency": 3.0})).raise_for_status()
        staff = get_client(url=urls[2], api_key=keys["staff"])
        thread = await staff.threads.create()
        run = await staff.runs.create(thread["thread_id"], "interlock",
                                      input=ask(f"Refund $5 on order {order}"))
        claimed = None
        for _ in range(100):  # who runs it, once its refund request is at the payments service
            with psycopg.connect(spec.database_url) as conn:
                row = conn.execute("SELECT claimed_by FROM runs WHERE run_id = %s",
                                   (run["run_id"],)).fetchone()
                journal = conn.execute("SELECT to_regclass('effects')").fetchone()
                sent = journal and journal[0] and conn.execute(
                    "SELECT count(*) FROM effects WHERE thread_id = %s AND attempts >= 1 "
                    "AND outcome IS NULL",
                    (thread["thread_id"],)).fetchone()
            stats = (await http.get(f"{payments}/_sim/stats")).json()
            if row and row[0] and sent and sent[0] and stats.get("in_flight", 0) >= 1:
                claimed = str(row[0])
                break
            await asyncio.sleep(0.1)
        assert claimed is not None
        pids = json.loads((spec.home / "replicas.json").read_text())["pids"]
        # Aegra names its workers "<host>-<pid>-worker-<i>".
        [(n, pid)] = [(n, int(p)) for n, p in pids.items() if f"-{p}-worker-" in claimed]
        os.killpg(pid, signal.SIGKILL)  # mid-payment: the request went out, no answer came
        (await http.put(f"{payments}/_sim/faults", json={})).raise_for_status()
        survivor = get_client(url=urls[(int(n) + 1) % 3], api_key=keys["staff"])
        status = "running"
        for _ in range(240):
            status = (await survivor.runs.get(thread["thread_id"], run["run_id"]))["status"]
            if status not in ("pending", "running"):
                break
            await asyncio.sleep(0.5)
        refunds = (await http.get(f"{payments}/v1/refunds",
                                  params={"order_id": order})).json()["refunds"]
    assert status == "success", status
    assert [r["amount_cents"] for r in refunds if r["amount_cents"] == 500] == [500]
    await restart(spec, int(n), keys["staff"])


def test_lineage_reads_a_thread_the_cluster_served(cluster: dict[str, Any],
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from graphs.cli import main

    spec: Cluster = cluster["spec"]
    with psycopg.connect(spec.database_url) as conn:
        row = conn.execute("SELECT thread_id FROM runs WHERE status = 'success' ORDER BY "
                           "created_at LIMIT 1").fetchone()
    assert row is not None
    monkeypatch.setenv("INTERLOCK_HOME", str(spec.home))
    monkeypatch.setenv("INTERLOCK_DATABASE_URL", spec.database_url)
    assert main(["history", str(row[0]), "--json"]) == 0
    steps = json.loads(capsys.readouterr().out)
    assert any("output_guard" in s["nodes"] for s in steps)


async def test_no_customer_reaches_another_customers_thread_on_any_path(
        cluster: dict[str, Any]) -> None:
    a, b, _ = cluster["urls"]
    keys = cluster["keys"]
    owner = get_client(url=a, api_key=keys["c7"])
    thread = await owner.threads.create()
    tid = thread["thread_id"]
    await owner.runs.wait(tid, "interlock", input=ask("Where is my order 1042? secret HUNTER2"))
    before = len((await owner.threads.get_state(tid))["values"]["messages"])
    async with httpx.AsyncClient(base_url=b, headers={"x-api-key": keys["c9"]}) as other:
        # A run that "creates" a thread under an id another customer holds.
        for route in ("/runs/wait", "/runs/stream", "/runs"):
            answer = await other.post(f"/threads/{tid}{route}", json={
                "assistant_id": "interlock", "if_not_exists": "create",
                "input": ask("what do you know?")})
            assert answer.status_code == 404, (route, answer.text)
            assert "HUNTER2" not in answer.text
        # A thread "made" under that id, asking for the existing one back.
        for asked in ({"thread_id": tid, "if_exists": "do_nothing"},
                      {"threadId": tid, "ifExists": "do_nothing"},  # the server's aliases
                      {"thread_id": tid, "if_exists": "raise", "ifExists": "do_nothing"},
                      {"thread_id": str(uuid.uuid4()), "threadId": tid}):
            made = await other.post("/threads", json=asked)
            assert made.status_code in (404, 409), (asked, made.text)
            assert "customer:7" not in made.text and "HUNTER2" not in made.text, made.text
        for path in (f"/threads/{tid}", f"/threads/{tid}/state", f"/threads/{tid}/history",
                     f"/threads/{tid}/runs"):
            seen = await other.get(path)
            assert seen.status_code == 404 and "HUNTER2" not in seen.text, (path, seen.text)
        # A thread a customer's run makes under a new id is theirs, and only theirs.
        fresh = str(uuid.uuid4())
        mine = await other.post(f"/threads/{fresh}/runs/wait", json={
            "assistant_id": "interlock", "if_not_exists": "create",
            "input": ask("What is your return policy?"),
            "metadata": {"actor": "customer:7"},
            "config": {"metadata": {"actor": "customer:7", "owner": "customer:7"}}})
        assert mine.status_code == 200, mine.text
        assert (await other.get(f"/threads/{fresh}/state")).status_code == 200
    assert len((await owner.threads.get_state(tid))["values"]["messages"]) == before
    with pytest.raises(Exception) as hidden:
        await owner.threads.get_state(fresh)
    assert "404" in str(hidden.value) or "not found" in str(hidden.value).lower()


async def test_a_thread_named_like_a_route_is_its_owners_alone(cluster: dict[str, Any]) -> None:
    a, b, _ = cluster["urls"]
    keys = cluster["keys"]
    async with httpx.AsyncClient(base_url=a, headers={"x-api-key": keys["c7"]}) as owner, \
            httpx.AsyncClient(base_url=b, headers={"x-api-key": keys["c9"]}) as other:
        made = await owner.post("/threads", json={"thread_id": "count"})
        assert made.status_code == 200, made.text
        answer = await owner.post("/threads/count/runs/wait", json={
            "assistant_id": "interlock", "input": ask("Where is my order 1042? secret HUNTER2")})
        assert answer.status_code == 200, answer.text
        for path in ("/threads/count/state", "/threads/count/history", "/threads/count/runs"):
            seen = await other.get(path)
            assert seen.status_code == 404 and "HUNTER2" not in seen.text, (path, seen.text)
        ran = await other.post("/threads/count/runs/wait", json={
            "assistant_id": "interlock", "if_not_exists": "create",
            "input": ask("what do you know?")})
        assert ran.status_code == 404 and "HUNTER2" not in ran.text, ran.text
        assert (await owner.get("/threads/count/state")).status_code == 200


async def test_staff_speaking_first_on_a_customers_thread_keeps_it_the_customers(
        cluster: dict[str, Any]) -> None:
    a, b, c = cluster["urls"]
    keys = cluster["keys"]
    customer = get_client(url=a, api_key=keys["c7"])
    thread = await customer.threads.create()
    staff = get_client(url=b, api_key=keys["staff"])
    first = await staff.runs.wait(thread["thread_id"], "interlock",
                                  input=ask("Where is order 1042?"))
    assert "1042" in last(first)
    again = await get_client(url=c, api_key=keys["c7"]).runs.wait(
        thread["thread_id"], "interlock", input=ask("Where is my order 1042?"))
    assert "1042" in last(again) and "not found" not in last(again).lower(), last(again)
