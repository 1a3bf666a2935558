"""The model gateway: what it adds per call, and what it saves when the model fails.

An OpenAI-compatible stub plays the model's server (a subprocess, `http.server`); the gateway
runs as `interlock gateway` (a subprocess); the client is the OpenAI SDK in this process.
- latency: median and p90 ms of one completion, the SDK calling the stub directly vs through
  the gateway (sequential calls, after a warm-up);
- calls per logical call, counted by the stub, the SDK left at its defaults (2 retries):
  directly, and through the gateway, with the model answering 429 (`Retry-After: 0`) or 503
  to every call.
Run: `.venv/bin/python bench/gateway.py [--calls 300] [--failing 30] [--json]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import openai

ROOT = Path(__file__).resolve().parents[1]
STUB = r'''
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
mode = {"status": 200}
calls = {"n": 0}
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        super().setup()
        import socket
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    def _send(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        self._send(200, {"calls": calls["n"]})
    def do_PUT(self):
        n = int(self.headers.get("Content-Length", "0"))
        mode.update(json.loads(self.rfile.read(n)))
        calls["n"] = 0
        self._send(200, mode)
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(n)
        calls["n"] += 1
        s = mode["status"]
        if s == 429:
            return self._send(429, {"error": {"message": "Rate limit reached",
                                              "type": "rate_limit"}}, [("Retry-After", "0")])
        if s >= 500:
            return self._send(s, {"error": {"message": "overloaded", "type": "server_error"}})
        self._send(200, {"id": "c", "object": "chat.completion", "created": 0, "model": "m",
                         "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                      "message": {"role": "assistant", "content": "ok",
                                                  "refusal": None}}],
                         "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                   "total_tokens": 2}})
    def log_message(self, *a):
        pass
server = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(server.server_address[1], flush=True)
server.serve_forever()
'''


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _latency(sdk: openai.AsyncOpenAI, calls: int) -> dict[str, float]:
    for _ in range(20):
        await sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    times = []
    for _ in range(calls):
        began = time.perf_counter()
        await sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        times.append((time.perf_counter() - began) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 2),
            "p90_ms": round(times[int(len(times) * 0.9)], 2)}


async def _amplification(sdk: openai.AsyncOpenAI, stub: str, status: int,
                         logical: int) -> dict[str, Any]:
    httpx.put(stub, json={"status": status})
    failed = 0
    began = time.perf_counter()
    for _ in range(logical):
        try:
            await sdk.chat.completions.create(model="m",
                                              messages=[{"role": "user", "content": "hi"}])
        except openai.APIError:
            failed += 1
    seconds = time.perf_counter() - began
    calls = httpx.get(stub).json()["calls"]
    httpx.put(stub, json={"status": 200})
    return {"logical_calls": logical, "failed": failed, "model_calls": calls,
            "per_logical_call": round(calls / logical, 2),
            "seconds_per_logical_call": round(seconds / logical, 3)}


async def measure(calls: int, failing: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        stub_process = subprocess.Popen([sys.executable, "-c", STUB], stdout=subprocess.PIPE,
                                        text=True)
        assert stub_process.stdout is not None
        stub_port = int(stub_process.stdout.readline())
        stub = f"http://127.0.0.1:{stub_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("INTERLOCK_",
                                                                          "LANGSMITH_"))}
        env.update({"INTERLOCK_HOME": str(home), "INTERLOCK_MODEL": "openai:bench-model",
                    "OPENAI_BASE_URL": f"{stub}/v1", "OPENAI_API_KEY": "upstream"})
        key = subprocess.run([sys.executable, "-m", "graphs.cli", "keys", "add", "--staff",
                              "--label", "bench"], env=env, cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split()[0]
        gateway = subprocess.Popen([sys.executable, "-m", "graphs.cli", "gateway", "--port",
                                    str(_port())], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                   text=True)
        assert gateway.stdout is not None
        via = gateway.stdout.readline().strip()
        try:
            direct = openai.AsyncOpenAI(base_url=f"{stub}/v1", api_key="upstream")
            governed = openai.AsyncOpenAI(base_url=via, api_key=key)
            result: dict[str, Any] = {
                "latency": {"direct": await _latency(direct, calls),
                            "gateway": await _latency(governed, calls)}}
            for status in (429, 503):
                result[f"model_{status}"] = {
                    "sdk_defaults_direct": await _amplification(direct, stub, status, failing),
                    "sdk_defaults_via_gateway": await _amplification(governed, stub, status,
                                                                     failing)}
                # The breaker opened: let it close before the next fault.
                gateway.terminate()
                gateway.wait(timeout=10)
                gateway = subprocess.Popen(
                    [sys.executable, "-m", "graphs.cli", "gateway", "--port",
                     via.rsplit(":", 1)[1].split("/")[0]], env=env, cwd=ROOT,
                    stdout=subprocess.PIPE, text=True)
                assert gateway.stdout is not None
                gateway.stdout.readline()
            return result
        finally:
            gateway.terminate()
            stub_process.terminate()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--failing", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(measure(args.calls, args.failing))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    lat = result["latency"]
    print("| path | p50 ms | p90 ms |\n|---|---:|---:|")
    for name in ("direct", "gateway"):
        print(f"| {name} | {lat[name]['p50_ms']} | {lat[name]['p90_ms']} |")
    print(f"\nadded by the gateway (p50): "
          f"{round(lat['gateway']['p50_ms'] - lat['direct']['p50_ms'], 2)} ms\n")
    print("| model answers | client | model calls per logical call | s per logical call |")
    print("|---|---|---:|---:|")
    for status in (429, 503):
        for name, row in result[f"model_{status}"].items():
            print(f"| {status} to every call | {name} | {row['per_logical_call']} | "
                  f"{row['seconds_per_logical_call']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
