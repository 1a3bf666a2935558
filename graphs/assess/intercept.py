"""Every outbound call of an assessed graph, answered in-process and counted.

The httpx and httpx2 transports are patched (the OpenAI SDK uses httpx2, most tools httpx), so
a call is answered by a function of the probe's choosing: a reply, or a hang. Every other
socket connection to a host beyond this machine is refused and counted: nothing the graph
does leaves the machine. Each call records which probe request made it (a context variable
the probe runner sets) and the trace run it was made in, for the trace probe.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

__all__ = ["Call", "Hang", "Intercepted", "Outbound", "Reply", "current_request",
           "intercepted", "request_scope"]

_RETRY_HEADER = "x-stainless-retry-count"
"""Set by the OpenAI and Anthropic SDKs on every attempt: 0 on a first try, n on a retry."""

_REQUEST: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "interlock_assess_request", default=None)
"""(run id, route) of the probe request in progress, inherited by the tasks it starts."""


def current_request() -> tuple[int, int] | None:
    """`(run id, route)` of the probe request this code runs for, if any."""
    return _REQUEST.get()


@contextmanager
def request_scope(run_id: int, route: int) -> Iterator[None]:
    """Mark the code inside as probe request `run_id`, which takes route `route`."""
    token = _REQUEST.set((run_id, route))
    try:
        yield
    finally:
        _REQUEST.reset(token)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outbound:
    """One request the graph sent, as the answering function sees it."""

    method: str
    """HTTP method."""
    url: str
    """The full URL."""
    host: str
    """Its host (`host:port` when a port is given)."""
    path: str
    """The URL path."""
    body: Any
    """The JSON body, or None when there is none or it is not JSON."""
    route: int
    """The route of the probe request that sent it (0 outside one)."""


Reply = tuple[int, Any, dict[str, str]]
"""How a call is answered: status, body (JSON-ready, or bytes sent as they are), headers."""


@dataclass(frozen=True, slots=True)
class Hang:
    """Answer nothing for `seconds` (or until released), then `then`.

    A client whose read timeout is shorter gets a `ReadTimeout` when it fires, as on the wire.
    """

    seconds: float
    then: Reply = (503, {"error": {"message": "injected: the dependency hung"}}, {})


@dataclass(slots=True)
class Call:
    """One outbound call the graph made."""

    host: str
    """Where it was going."""
    path: str
    """The URL path."""
    sdk_retry: int
    """The SDK's own retry number (0: a first attempt, or a client that does not say)."""
    run_id: int | None = None
    """The probe request that made it (None: outside any)."""
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    """When it was made (UTC, as trace spans are stamped)."""
    traced_in: tuple[str, ...] = ()
    """Ids of the trace runs current when it was made (LangChain's and LangSmith's)."""
    node: str = ""
    """The graph node that made it (`agent/tools` inside a subgraph; empty if unknown)."""


def _context() -> tuple[tuple[str, ...], str]:
    """Where the current code runs: its trace runs, and the graph node it runs for.

    The runs are LangChain's config parent and LangSmith's current run tree.
    """
    found: list[str] = []
    node = ""
    try:
        from langchain_core.runnables.config import var_child_runnable_config
        config = var_child_runnable_config.get() or {}
        parent = getattr(config.get("callbacks"), "parent_run_id", None)
        if parent is not None:
            found.append(str(parent))
        meta = config.get("metadata") or {}
        namespace = str(meta.get("langgraph_checkpoint_ns") or "")
        # `agent:<task id>|tools:<task id>`; a bare number marks a retry or a Send, not a node.
        path = [name for part in namespace.split("|")
                if (name := part.split(":")[0]) and not name.isdigit()]
        node = "/".join(path) or str(meta.get("langgraph_node") or "")
    except ImportError:  # pragma: no cover - langchain_core comes with langgraph
        pass
    try:
        from langsmith.run_helpers import get_current_run_tree
        tree = get_current_run_tree()
        if tree is not None and str(tree.id) not in found:
            found.append(str(tree.id))
    except ImportError:  # pragma: no cover - langsmith comes with langgraph
        pass
    return tuple(found), node


@dataclass(slots=True)
class Intercepted:
    """What the graph sent while intercepted, and how it is answered."""

    answer: Callable[[Outbound], Reply | Hang]
    """How every call is answered."""
    calls: list[Call] = field(default_factory=list)
    """Every call, in order."""
    blocked: int = 0
    """Connections stopped that did not go through httpx."""
    released: threading.Event = field(default_factory=threading.Event)
    """Set to end every hang at once (a timeout, to the client)."""

    def handle(self, request: Any) -> Reply | Hang:
        """Count the call and answer it."""
        retry = request.headers.get(_RETRY_HEADER, "0")
        scope = _REQUEST.get()
        traced_in, node = _context()
        self.calls.append(Call(host=request.url.host + (f":{request.url.port}"
                                                        if request.url.port else ""),
                               path=request.url.path,
                               sdk_retry=int(retry) if retry.isdigit() else 0,
                               run_id=scope[0] if scope else None, traced_in=traced_in,
                               node=node))
        try:
            body = json.loads(request.content) if request.content else None
        except (ValueError, UnicodeDecodeError):
            body = None
        return self.answer(Outbound(method=request.method, url=str(request.url),
                                    host=self.calls[-1].host, path=request.url.path, body=body,
                                    route=scope[1] if scope else 0))

    def to(self, host: str) -> int:
        """How many calls went to `host`."""
        return sum(1 for c in self.calls if c.host == host)


def _clients() -> list[Any]:
    """The httpx packages in this process (the OpenAI SDK uses `httpx2`, most tools `httpx`)."""
    found = [httpx]
    try:
        import httpx2  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return found
    return [*found, httpx2]


def _response(module: Any, reply: Reply, request: Any) -> Any:
    status, body, headers = reply
    if isinstance(body, bytes):
        return module.Response(status, content=body, headers=headers, request=request)
    return module.Response(status, json=body, headers=headers, request=request)


def _read_timeout(request: Any) -> float | None:
    timeout = (request.extensions.get("timeout") or {}).get("read")
    return None if timeout is None else float(timeout)


@contextmanager
def intercepted(answer: Callable[[Outbound], Reply | Hang]) -> Iterator[Intercepted]:
    """Answer every httpx call in-process with `answer`, while inside."""
    box = Intercepted(answer=answer)
    saved: list[tuple[Any, str, Any]] = []
    real_sleep = asyncio.sleep

    def patch(owner: Any, name: str, value: Any) -> None:
        saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    for module in _clients():
        async def handle_async(self: Any, request: Any, module: Any = module) -> Any:
            await request.aread()
            reply = box.handle(request)
            if not isinstance(reply, Hang):
                return _response(module, reply, request)
            read = _read_timeout(request)
            wait = reply.seconds if read is None else min(reply.seconds, read)
            ends = time.monotonic() + wait
            # Polled, not one long sleep: a release ends every hang at once.
            while not box.released.is_set() and (left := ends - time.monotonic()) > 0:
                await real_sleep(min(left, 0.02))
            if box.released.is_set() or (read is not None and read <= reply.seconds):
                raise module.ReadTimeout("interlock assess: the dependency hangs",
                                         request=request)
            return _response(module, reply.then, request)

        def handle_sync(self: Any, request: Any, module: Any = module) -> Any:
            request.read()
            reply = box.handle(request)
            if not isinstance(reply, Hang):
                return _response(module, reply, request)
            read = _read_timeout(request)
            box.released.wait(reply.seconds if read is None else min(reply.seconds, read))
            if box.released.is_set() or (read is not None and read <= reply.seconds):
                raise module.ReadTimeout("interlock assess: the dependency hangs",
                                         request=request)
            return _response(module, reply.then, request)

        patch(module.AsyncHTTPTransport, "handle_async_request", handle_async)
        patch(module.HTTPTransport, "handle_request", handle_sync)

    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        # Anything that does not go through httpx (requests, aiohttp, raw sockets) is stopped
        # here: nothing the probed graph does leaves the machine.
        host = address[0] if isinstance(address, tuple) else address
        if self.family == getattr(socket, "AF_UNIX", None) or (
                isinstance(host, str) and host in ("127.0.0.1", "::1", "localhost")):
            return real_connect(self, address)
        box.blocked += 1
        raise ConnectionRefusedError(f"interlock assess: no network ({host})")

    patch(socket.socket, "connect", connect)
    try:
        yield box
    finally:
        box.released.set()
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)
