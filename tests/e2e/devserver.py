"""A real `langgraph dev` serving the repository's langgraph.json, for tests over HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from graphs.core.state import Actor
from graphs.keys import add_key
from tools.simulators.payments import PaymentsSimulator

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _langgraph(root: Path) -> Path:
    """The `langgraph` command of `root`'s own venv when it has one (its code, not ours)."""
    own = root / ".venv" / "bin" / "langgraph"
    return own if root != ROOT and own.exists() else Path(sys.executable).with_name("langgraph")


def wait_ready(url: str, process: subprocess.Popen[Any], log_path: Path) -> None:
    """Wait until the server at `url` answers `/ok`; fail with its log if it dies or never does."""
    for _ in range(600):
        try:
            if httpx.get(f"{url}/ok", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.1)
    else:
        pytest.fail("langgraph dev did not start")
    assert process.poll() is None, log_path.read_text()[-3000:]


@contextmanager
def dev_server(workdir: Path, actors: Mapping[str, Actor],
               env: Mapping[str, str] | None = None, *, root: Path = ROOT
               ) -> Iterator[dict[str, Any]]:
    """Start `langgraph dev` in `workdir` with a key per actor; yield url, keys and home.

    `root` is the checkout whose langgraph.json is served, with its own venv if it has one
    (another checkout, for a before/after).
    """
    home = workdir / "home"
    keys = {name: add_key(home / "api-keys.json", actor, label=name)[1]
            for name, actor in actors.items()}
    port = free_port()
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("INTERLOCK_", "LANGSMITH_", "LANGCHAIN_"))}
    environ.update({"INTERLOCK_HOME": str(home), "LANGGRAPH_CLI_NO_ANALYTICS": "1",
                    "LANGGRAPH_NO_VERSION_CHECK": "true", **(env or {})})
    # The repository's langgraph.json, its paths made absolute for the scratch directory.
    spec = json.loads((root / "langgraph.json").read_text())
    spec["graphs"] = {name: str(root / path) for name, path in spec["graphs"].items()}
    spec["auth"]["path"] = str(root / spec["auth"]["path"])
    spec["dependencies"] = [str(root)]

    config = workdir / "langgraph.json"
    config.write_text(json.dumps(spec))
    log_path = workdir / "server.log"
    log = open(log_path, "w")  # closed in `finally`
    process = subprocess.Popen(
        [str(_langgraph(root)), "dev", "--no-browser",
         "--no-reload", "--host", "127.0.0.1", "--port", str(port), "--config", str(config)],
        # The dev server keeps its state in its working directory: a scratch one, not the repo.
        cwd=workdir, env=environ, stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, log_path)
        yield {"url": url, "keys": keys, "home": home, "log": log_path}
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        server_log = log_path.read_text()
        assert "BlockingError" not in server_log, "blocking I/O on the server's event loop"


def client(server: Mapping[str, Any], who: str) -> Any:
    return get_client(url=server["url"], api_key=server["keys"][who])


def ask(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def refunds(server: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every refund the server's payments simulator has made (counted at the service)."""
    home = server["home"]
    return PaymentsSimulator(home / "payments-sim.db", home / "store.db").all_refunds()


def made_since(server: Mapping[str, Any], before: int) -> list[tuple[int, int]]:
    """(order, cents) of each refund made after the first `before`."""
    return [(r["order_id"], r["amount_cents"]) for r in refunds(server)[before:]]
