"""Serve a simulator over real HTTP (uvicorn), for tests and for pointing a deployment at it.

Besides the contract's routes, a served simulator answers `GET /_sim/stats` (calls received,
answers by status), `PUT /_sim/faults` (replace its faults) and, for payments,
`GET /_sim/refunds` (every refund made through the API, with its idempotency key).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from typing import Any

import httpx

from graphs.core.errors import NotFoundError
from tools.config import ToolSettings
from tools.dependencies import Simulator
from tools.policy import FaultSpec
from tools.simulators.payments import PaymentsSimulator

__all__ = ["Listening", "asgi_app", "build_simulator", "serve", "serving"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def build_simulator(dependency: str, settings: ToolSettings) -> Simulator:
    """The simulator of a registered dependency, with the faults settings give it."""
    registered = {d.name: d for d in settings.dependencies}.get(dependency)
    simulator = registered.simulate(settings) if registered is not None else None
    if simulator is None:
        names = ", ".join(d.name for d in settings.dependencies if d.simulator is not None)
        raise NotFoundError(f"no simulator for {dependency!r} (simulated: {names})",
                            field="dependency")
    return simulator


def _control(sim: Simulator, method: str, path: str, body: bytes) -> httpx.Response | None:
    if path == "/_sim/stats" and method == "GET":
        return httpx.Response(200, json={"calls": sim.stats.calls,
                                         "statuses": {str(k): v for k, v in
                                                      sim.stats.statuses.items()},
                                         "in_flight": sim.stats.in_flight,
                                         "max_in_flight": sim.stats.max_in_flight})
    if path == "/_sim/faults" and method == "PUT":
        try:
            raw = json.loads(body or b"{}")
            known = {f.name for f in fields(FaultSpec)}
            spec = FaultSpec(**{k: v for k, v in raw.items() if k in known})
        except (ValueError, TypeError, AttributeError) as exc:
            return httpx.Response(400, json={"error": "invalid_faults", "detail": str(exc)})
        sim.faults.set(spec)
        return httpx.Response(200, json={"faults": {f: getattr(spec, f) for f in known}})
    if path == "/_sim/refunds" and method == "GET" and isinstance(sim, PaymentsSimulator):
        return httpx.Response(200, json={"refunds": sim.all_refunds()})
    return None


def asgi_app(sim: Simulator) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI application around an in-process simulator."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        query = scope.get("query_string", b"").decode()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        response = _control(sim, scope["method"], path, body)
        if response is None:
            request = httpx.Request(scope["method"], f"http://sim{path}?{query}",
                                    headers=headers, content=body)
            response = await sim(request)
        await send({"type": "http.response.start", "status": response.status_code,
                    "headers": [(k.encode("latin-1"), v.encode("latin-1"))
                                for k, v in response.headers.items()]})
        await send({"type": "http.response.body", "body": response.content})

    return app


@dataclass(frozen=True, slots=True)
class Listening:
    """An ASGI app served in this process: where it listens, and the server's task."""

    url: str
    """`http://host:port`."""
    stopped: asyncio.Task[None]
    """Ends when the server stops (await it to serve until interrupted)."""


@asynccontextmanager
async def serving(app: Any, *, host: str = "127.0.0.1", port: int = 0
                  ) -> AsyncIterator[Listening]:
    """Serve an ASGI app with uvicorn in this process for the block (port 0: a free one)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           lifespan="off", access_log=False))
    task = asyncio.create_task(server.serve())
    # uvicorn.Server exposes only a `started` flag, no event to wait on.
    while not server.started and not task.done():  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    if not server.started:
        task.result()  # what stopped it (a port in use)
        raise RuntimeError(f"the server did not start on {host}:{port}")
    bound = server.servers[0].sockets[0].getsockname()
    try:
        yield Listening(url=f"http://{bound[0]}:{bound[1]}", stopped=task)
    finally:
        server.should_exit = True
        await task


async def serve(dependency: str, settings: ToolSettings, *, host: str = "127.0.0.1",
                port: int = 0) -> None:
    """Serve one simulator until interrupted; prints its base URL once listening."""
    sim = build_simulator(dependency, settings)
    async with serving(asgi_app(sim), host=host, port=port) as listening:
        print(listening.url, flush=True)
        sys.stdout.flush()
        await listening.stopped
