"""Counts the HTTP requests a one-task crew sends for one failing model call: stock vs governed.

Run in .crewai-venv: `measure.py [--model-url URL] [--gateway-url URL --key KEY] [--modes
429,503]`, where the model at URL (the gateway's model too) answers a prompt containing
`MODE=429` with 429 (Retry-After: 1) and one containing `MODE=503` with 503, every time (or
fails every call one way, with `--modes` naming that one). Prints one JSON object:
`{"native": {MODE: {"requests", "seconds", "statuses", "outcome"}}, "governed": ...}`.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

# drafting_graph turns CrewAI's telemetry and tracing off before crewai loads.
from drafting_graph import BaseLLM, GovernedLLM  # noqa: E402

# isort: split
from crewai import LLM, Agent, Crew, Task  # noqa: E402

__all__ = ["Counted", "counting_proxy", "main", "measure"]

MODES = ("429", "503")


@dataclass
class Counted:
    """What passed through a counting proxy: one status per request, and governor attempts."""

    statuses: list[int] = field(default_factory=list)
    model_attempts: int = 0
    """Model attempts the gateway reported making (its answer's `interlock.events`)."""


@contextmanager
def counting_proxy(upstream: str) -> Iterator[tuple[str, Counted]]:
    """A local proxy to `upstream` (a `/v1` base URL): yields its own base URL and its counts."""
    counted = Counted()
    client = httpx.Client(timeout=120)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in ("host", "content-length", "connection")}
            answer = client.post(upstream.rstrip("/") + self.path.removeprefix("/v1"),
                                 content=body, headers=headers)
            counted.statuses.append(answer.status_code)
            try:
                events = answer.json().get("interlock", {}).get("events", [])
                counted.model_attempts += sum(e.get("kind") == "attempt" for e in events)
            except (ValueError, AttributeError):
                pass
            self.send_response(answer.status_code)
            for key, value in answer.headers.items():
                if key.lower() not in ("content-length", "transfer-encoding", "connection",
                                       "content-encoding", "date", "server"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", counted
    finally:
        server.shutdown()
        server.server_close()
        client.close()


def _one_task_crew(llm: BaseLLM, mode: str, **agent: Any) -> Crew:
    worker = Agent(role="writer", goal="Answer the customer.", backstory="A support writer.",
                   llm=llm, verbose=False, **agent)
    task = Task(description=f"Say hello to the customer. MODE={mode}",
                expected_output="A greeting.", agent=worker)
    return Crew(agents=[worker], tasks=[task], verbose=False)


def measure(make_llm: Callable[[str], BaseLLM], upstream: str, mode: str, repeat: int = 1,
            **agent: Any) -> dict[str, Any]:
    """`repeat` kickoffs of a one-task crew (one logical model call each), per kickoff."""
    with counting_proxy(upstream) as (url, counted):
        started = time.monotonic()
        outcomes: list[str] = []
        for _ in range(repeat):
            crew = _one_task_crew(make_llm(url), mode, **agent)
            with redirect_stdout(sys.stderr):  # CrewAI prints its warnings on stdout
                try:
                    outcomes.append(f"returned {str(crew.kickoff().raw)[:120]!r}")
                except Exception as exc:  # what the crew raised is the measurement
                    outcomes.append(f"raised {type(exc).__name__}: {str(exc)[:160]}")
        seconds = round((time.monotonic() - started) / repeat, 2)
    result: dict[str, Any] = {"requests": round(len(counted.statuses) / repeat, 2),
                              "seconds": seconds, "statuses": sorted(set(counted.statuses)),
                              "outcome": outcomes[-1]}
    if counted.model_attempts:
        result["model_attempts_behind_gateway"] = round(counted.model_attempts / repeat, 2)
    return result


def main(argv: list[str] | None = None) -> None:
    """Measure stock CrewAI against --model-url and the governed LLM against --gateway-url."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-url", help="the failing model's /v1 base URL")
    parser.add_argument("--gateway-url", help="Interlock's gateway /v1 URL")
    parser.add_argument("--key", help="a staff key for the gateway")
    parser.add_argument("--repeat", type=int, default=1,
                        help="kickoffs per measurement (figures are per kickoff)")
    parser.add_argument("--modes", default=",".join(MODES),
                        help="the failures to measure, of 429,503 (the model must answer each "
                             "as the module says, or fail that way on every call)")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if not args.model_url and not args.gateway_url:
        parser.error("give --model-url, --gateway-url (with --key), or both")
    if args.gateway_url and not args.key:
        parser.error("--gateway-url needs --key")

    def native(url: str) -> BaseLLM:  # CrewAI's defaults: the OpenAI SDK's max_retries=2
        return LLM(model="openai/stub-model", base_url=url, api_key="sk-measure")

    def governed(url: str) -> BaseLLM:
        return GovernedLLM(model="gateway", base_url=url, api_key=args.key)

    report: dict[str, Any] = {}
    if args.model_url:
        report["native"] = {mode: measure(native, args.model_url, mode, args.repeat)
                            for mode in modes}
    if args.gateway_url:
        report["governed"] = {mode: measure(governed, args.gateway_url, mode, args.repeat,
                                            max_retry_limit=0) for mode in modes}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
