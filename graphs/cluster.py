"""`make cluster`: several replicas of Interlock on Aegra, Postgres and Redis, on one machine.

    python -m graphs.cluster up --replicas N --port P     # replicas on ports P..P+N-1
    python -m graphs.cluster down                          # stop them
    python -m graphs.cluster status

Every replica is Aegra (its own environment, `.aegra-venv`, Python 3.12) serving Interlock's
graph, edge and auth rules (`cluster/aegra.json`), with its own run workers; all of them share
one Postgres database (Aegra's threads and runs, Interlock's checkpoints and effects journal)
and one Redis (Aegra's run queue and streams, Interlock's breakers and retry budgets). A run
created on any replica is queued in Redis and taken by any replica's worker; one a replica
was running when it died is taken over when its lease lapses.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Cluster", "down", "main", "up"]

ROOT = Path(__file__).resolve().parents[1]
"""The repository: `cluster/aegra.json` and `.aegra-venv` live under it."""
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
"""Where the cluster's database is made (trust auth on this machine and in CI)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Cluster:
    """One cluster's settings: where its replicas listen and what they share."""

    replicas: int = 3
    port: int = 8300
    database: str = "interlock_cluster"
    """The Postgres database (made if missing)."""
    redis: str = "redis://127.0.0.1:6379/0"
    prefix: str = "interlock-cluster"
    """Every Redis key the cluster writes starts with this."""
    home: Path = ROOT / ".interlock" / "cluster"
    """INTERLOCK_HOME of every replica (API keys, store, pid files, logs)."""
    lease_s: int = 30
    """How long a dead replica's run stays claimed before another takes it over."""
    venv: Path = ROOT / ".aegra-venv"
    config: Path = ROOT / "cluster" / "aegra.json"
    """What every replica serves (Aegra's config)."""

    @property
    def database_url(self) -> str:
        """The shared database."""
        return f"{POSTGRES}/{self.database}"

    @property
    def urls(self) -> list[str]:
        """Every replica's base URL."""
        return [f"http://127.0.0.1:{self.port + n}" for n in range(self.replicas)]

    def env(self) -> dict[str, str]:
        """The environment every replica runs with."""
        heartbeat = max(1, self.lease_s // 3)
        inherited = {k: v for k, v in os.environ.items()
                     if k not in ("INTERLOCK_API_KEYS_FILE", "INTERLOCK_HOME")}
        return {**inherited,
                "AEGRA_CONFIG": str(self.config),
                "DATABASE_URL": self.database_url,
                "RUN_MIGRATIONS_ON_STARTUP": "false",
                "REDIS_BROKER_ENABLED": "true", "REDIS_URL": self.redis,
                "REDIS_CHANNEL_PREFIX": f"{self.prefix}:run:",
                "WORKER_QUEUE_KEY": f"{self.prefix}:jobs",
                "LEASE_DURATION_SECONDS": str(self.lease_s),
                "HEARTBEAT_INTERVAL_SECONDS": str(heartbeat),
                "REAPER_INTERVAL_SECONDS": str(heartbeat),
                "INTERLOCK_HOME": str(self.home),
                "INTERLOCK_DATABASE_URL": self.database_url,
                "INTERLOCK_RESILIENCE_STORE": _with_prefix(self.redis, self.prefix),
                "LANGSMITH_TRACING": os.environ.get("LANGSMITH_TRACING", "false"),
                "ENABLE_PROMETHEUS_METRICS": "false", "OTEL_TARGETS": "",
                "PYTHONUNBUFFERED": "1"}


def _with_prefix(url: str, prefix: str) -> str:
    """The Redis URL with `prefix=` added to whatever query it has."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "prefix"] + [("prefix", prefix)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _pids(cluster: Cluster) -> Path:
    return cluster.home / "replicas.json"


def _make_database(cluster: Cluster) -> None:
    import psycopg

    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
        found = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                              (cluster.database,)).fetchone()
        if found is None:
            admin.execute(f'CREATE DATABASE "{cluster.database}"')


def _ready(url: str, within_s: float, pid: int) -> bool:
    """Whether the replica at `url` answers within `within_s` (False at once if it died)."""
    import httpx

    ends = time.monotonic() + within_s
    while time.monotonic() < ends and _running(pid):
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    return False


def start_replica(cluster: Cluster, n: int) -> int:
    """Start replica `n` (port `port + n`); its pid."""
    logs = cluster.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"replica-{n}.log", "ab") as log:
        process = subprocess.Popen(
            [str(cluster.venv / "bin" / "python"), "-m", "uvicorn", "aegra_api.main:app",
             "--host", "127.0.0.1", "--port", str(cluster.port + n), "--log-level", "warning"],
            cwd=ROOT, env=cluster.env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    return process.pid


def up(cluster: Cluster) -> list[str]:
    """Start every replica and wait until each answers; their URLs."""
    if not (cluster.venv / "bin" / "python").exists():
        raise SystemExit(f"no Aegra environment at {cluster.venv}: run `make cluster`")
    if alive := _replicas(cluster):
        raise SystemExit(f"a cluster is already running from {cluster.home} (pids "
                         f"{', '.join(map(str, alive))}): `make cluster-down` first")
    cluster.home.mkdir(parents=True, exist_ok=True)
    _make_database(cluster)
    subprocess.run([str(cluster.venv / "bin" / "aegra"), "db", "upgrade"], cwd=ROOT,
                   env=cluster.env(), check=True, stdout=subprocess.DEVNULL)
    # The first alone: it creates the checkpoint tables, which replicas starting together
    # would race to create.
    pids = {"0": start_replica(cluster, 0)}
    _pids(cluster).write_text(json.dumps({"port": cluster.port, "pids": pids}))
    late = [] if _ready(cluster.urls[0], 60.0, pids["0"]) else [cluster.urls[0]]
    if not late:
        pids.update({str(n): start_replica(cluster, n) for n in range(1, cluster.replicas)})
        _pids(cluster).write_text(json.dumps({"port": cluster.port, "pids": pids}))
        late = [url for n, url in enumerate(cluster.urls[1:], 1)
                if not _ready(url, 60.0, pids[str(n)])]
    if late:
        down(cluster)
        raise SystemExit(f"replicas did not come up: {', '.join(late)} (logs in "
                         f"{cluster.home / 'logs'})")
    return cluster.urls


def _replicas(cluster: Cluster) -> list[int]:
    """The pids in the cluster's pid file that are still its replicas (not reused pids)."""
    path = _pids(cluster)
    if not path.exists():
        return []
    pids = [int(p) for p in json.loads(path.read_text()).get("pids", {}).values()]
    return [pid for pid in pids if _running(pid) and _is_replica(pid)]


def _is_replica(pid: int) -> bool:
    """Whether `pid` runs Aegra (a pid from a stale file may belong to anything now)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return b"aegra_api.main:app" in command


def down(cluster: Cluster) -> int:
    """Stop every replica the cluster started; how many were running."""
    path = _pids(cluster)
    if not path.exists():
        return 0
    pids = _replicas(cluster)
    alive = []
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGTERM)
            alive.append(pid)
        except ProcessLookupError:
            pass
    ends = time.monotonic() + 10
    while alive and time.monotonic() < ends:
        alive = [pid for pid in alive if _running(pid)]
        time.sleep(0.1)
    for pid in alive:
        os.killpg(pid, signal.SIGKILL)
    path.unlink()
    return len(pids)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not running
        status = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return True
    return status != "Z"


def _args(argv: list[str] | None) -> tuple[str, Cluster]:
    parser = argparse.ArgumentParser(prog="python -m graphs.cluster", description=__doc__)
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--replicas", type=int, default=int(os.environ.get("REPLICAS", 3)))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8300)))
    parser.add_argument("--database", default=os.environ.get("INTERLOCK_CLUSTER_DATABASE",
                                                             "interlock_cluster"))
    parser.add_argument("--redis", default=os.environ.get("INTERLOCK_CLUSTER_REDIS",
                                                          "redis://127.0.0.1:6379/0"))
    parser.add_argument("--prefix", default="interlock-cluster")
    parser.add_argument("--home", type=Path,
                        default=Path(os.environ.get("INTERLOCK_CLUSTER_HOME",
                                                    ROOT / ".interlock" / "cluster")))
    parser.add_argument("--lease", type=int, default=30, metavar="SECONDS")
    args = parser.parse_args(argv)
    if not 1 <= args.replicas <= 32:
        parser.error("--replicas takes 1 to 32")
    return args.command, Cluster(replicas=args.replicas, port=args.port,
                                 database=args.database, redis=args.redis, prefix=args.prefix,
                                 home=args.home.resolve(), lease_s=args.lease)


def main(argv: list[str] | None = None) -> int:
    """Start, stop or show the cluster."""
    command, cluster = _args(argv)
    if command == "down":
        print(f"stopped {down(cluster)} replicas")
        return 0
    if command == "status":
        path = _pids(cluster)
        state: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        for n, pid in (state.get("pids") or {}).items():
            port = int(state["port"]) + int(n)
            print(f"replica {n}: http://127.0.0.1:{port} pid {pid} "
                  f"{'running' if _running(int(pid)) else 'gone'}")
        return 0
    for url in up(cluster):
        print(url)
    print(f"database {cluster.database_url}, redis {cluster.redis} (prefix {cluster.prefix}), "
          f"home {cluster.home}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
