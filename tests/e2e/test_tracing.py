"""LangSmith traces captured in-process, and the CLI against unreachable endpoints.

The capture is a `requests` session that records what the client would send and sends
nothing.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import langsmith
import pytest
import requests

from graphs.runner import open_interlock
from graphs.settings import Settings
from graphs.tracing import close_tracing, configure_tracing

ROOT = Path(__file__).resolve().parents[2]
PII = ("ada.lovelace@example.com", "lovelace", "555-0102", "0102-1037", "4111 1111",
       "4111111111111111", "12 Baker Street", "Baker")


class CaptureSession(requests.Session):
    """Records every request the LangSmith client makes and answers 200; sends nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[bytes] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any,
                **kwargs: Any) -> requests.Response:  # type: ignore[override]
        data = kwargs.get("data")
        if hasattr(data, "to_string"):
            data = data.to_string()
        elif hasattr(data, "read"):
            data = data.read()
        self.bodies.append(data if isinstance(data, bytes) else str(data).encode())
        response = requests.Response()
        response.status_code = 200
        response._content = b"{}"
        response.url = str(url)
        return response


def runs_in(bodies: list[bytes]) -> dict[str, dict[str, Any]]:
    """The runs in multipart ingest bodies, merged from their post/patch parts by id."""
    runs: dict[str, dict[str, Any]] = {}
    for body in bodies:
        for part in re.split(rb"\r?\n--[^\r\n]+\r?\n", body):
            head, _, payload = part.partition(b"\r\n\r\n")
            name = re.search(rb'name="([^"]+)"', head)
            if not name or not payload.strip():
                continue
            kind, _, rest = name.group(1).decode().partition(".")
            run_id, _, field = rest.partition(".")
            try:
                value = json.loads(payload.strip().rsplit(b"\r\n--", 1)[0])
            except ValueError:
                continue
            run = runs.setdefault(run_id, {})
            if field:
                run[field] = value
            elif isinstance(value, dict):
                run.update(value)
    return runs


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[CaptureSession]:
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2-test-key")
    session = CaptureSession()
    client = configure_tracing(session=session)
    yield session
    close_tracing(client, timeout_s=5)
    langsmith.configure(client=None, enabled=False)


async def test_a_run_is_a_readable_redacted_trace(captured: CaptureSession,
                                                  settings: Settings) -> None:
    message = ("Where is my order 1042? I am ada.lovelace@example.com, +1-555-0102-1037, "
               "card 4111 1111 1111 1111, 12 Baker Street")
    async with open_interlock(settings) as app:
        result = await app.run(message)
    langsmith.run_trees.get_cached_client().flush(timeout=5)
    runs = runs_in(captured.bodies)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for run in runs.values():
        by_name.setdefault(str(run.get("name")), []).append(run)
    for node in ("intake_guard", "planner", "plan_guard", "supervisor", "fact_guard",
                 "responder", "output_guard", "worker:orders", "worker:shipping",
                 "carrier.track", "attempt 1", "verdict:intake", "verdict:plan",
                 "verdict:facts", "verdict:output"):
        assert node in by_name, sorted(by_name)
    thread = f"thread:{result.thread_id}"
    [tool] = by_name["carrier.track"]
    assert tool["run_type"] == "tool" and "dependency:carrier" in tool["tags"]
    assert thread in tool["tags"]
    meta = tool["extra"]["metadata"]
    assert meta["plan_step"] == "t1.s2" and meta["breaker_state"] == "closed"
    assert 0 < meta["deadline_left_s"] <= settings.deadline_s
    [attempt] = by_name["attempt 1"]
    assert attempt["parent_run_id"] == tool["id"]
    assert attempt["extra"]["metadata"]["attempt"] == 1
    assert attempt["outputs"]["outcome"] == "ok"
    [worker] = by_name["worker:shipping"]
    assert "worker:shipping" in worker["tags"] and thread in worker["tags"]
    assert worker["extra"]["metadata"]["plan_step"] == "t1.s2"
    ancestors, parent = set(), tool.get("parent_run_id")
    while parent in runs:
        ancestors.add(runs[parent]["name"])
        parent = runs[parent].get("parent_run_id")
    assert "worker:shipping" in ancestors
    verdicts = by_name["verdict:facts"]
    assert len(verdicts) == 2 and all("guard:facts" in v["tags"] for v in verdicts)
    assert {v["outputs"]["verdict"]["step_id"] for v in verdicts} == {"t1.s1", "t1.s2"}
    assert len(by_name["supervisor"]) == 1  # one hop: the fact guard routes to the answer
    everything = b"".join(captured.bodies).decode("utf-8", errors="replace")
    for secret in PII:
        assert secret not in everything, secret
    assert "[email redacted]" in everything and "[card number redacted]" in everything


def _blackhole() -> tuple[socket.socket, threading.Thread]:
    """A port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        server.settimeout(0.5)
        while True:
            try:
                conn, _ = server.accept()
                held.append(conn)
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    return server, thread


@pytest.mark.parametrize("endpoint", ["refused", "silent"])
def test_an_unreachable_endpoint_does_not_hold_the_cli(tmp_path: Path, endpoint: str) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("INTERLOCK_", "LANGSMITH_", "LANGCHAIN_"))}
    env.update({"INTERLOCK_HOME": str(tmp_path / "home"), "LANGSMITH_TRACING": "true",
                "LANGSMITH_API_KEY": "lsv2-test-key"})
    server = None
    if endpoint == "refused":
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]  # closed again: connections are refused
    else:
        server, _ = _blackhole()
        port = server.getsockname()[1]
    env["LANGSMITH_ENDPOINT"] = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "graphs.cli", "run",
                           "Where is my order 1042?", "--json"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    if server is not None:
        server.close()
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "completed"
    assert "Traceback" not in done.stderr
    # The run itself takes ~1.5 s here; flushing to a dead endpoint used to add 12 s to 2 min.
    assert elapsed < 6.0, (elapsed, done.stderr)
