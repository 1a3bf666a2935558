"""Every outbound call of an assessed graph, answered in-process and counted.

The httpx and httpx2 transports (the OpenAI SDK uses httpx2, most tools httpx) and the
`requests` adapter are patched, so a call is answered by a function of the probe's choosing: a
reply, or a hang. Every other connection to a host beyond this machine is refused, and so is
resolving its name: nothing the graph does leaves the machine, and what was stopped is counted.

One session (`intercepted`) covers a whole assessment, loading included; each probe runs in a
`phase` of it with its own answers, its own calls and its own release of hung calls. A phase
ends by releasing what hangs and waiting until the calls that wake up (an SDK retrying a
timeout from a worker thread) have been answered, so none of them lands in the next phase or,
after the session, on the network. Each call records the probe request that made it (a
context variable the probe runner sets), the node and the trace run it was made in.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import importlib
import importlib.util
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

__all__ = ["Call", "Hang", "Intercepted", "Outbound", "Refused", "Reply", "current_request",
           "guard_network", "intercepted", "request_scope"]

_RETRY_HEADER = "x-stainless-retry-count"
"""Set by the OpenAI and Anthropic SDKs on every attempt: 0 on a first try, n on a retry."""
_MUTATING = ("POST", "PUT", "PATCH", "DELETE")

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


@dataclass(frozen=True, slots=True)
class Refused:
    """Refuse the connection, as a dependency that is down does (a transport error)."""


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
    method: str = "GET"
    """HTTP method."""
    digest: str = ""
    """Method, URL and body hashed: the same logical call sent again has the same digest."""
    timeout_s: float | None = None
    """The client's read timeout for it (None: none set)."""
    client: str = "httpx"
    """Which client sent it: httpx, httpx2 or requests."""
    sync: bool = False
    """Sent by a blocking client (from a worker thread)."""
    keyed: bool = False
    """It carried an Idempotency-Key header."""

    @property
    def mutating(self) -> bool:
        """A method that changes something (POST, PUT, PATCH, DELETE)."""
        return self.method in _MUTATING


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


_OVER: Reply = (400, {"error": {"message": "interlock assess: the probe is over",
                                "type": "invalid_request_error"}}, {})
"""What a call still hanging when its probe ends gets: an error no client retries, so the work
it belongs to ends now instead of retrying after the assessment."""


def _refuse(call: Outbound) -> Reply:
    """Between phases and after the session: a refusal the SDKs retry after a millisecond."""
    return 503, {"error": {"message": "interlock assess: not answering now",
                           "type": "server_error"}}, {"retry-after-ms": "1"}


@dataclass(slots=True)
class Intercepted:
    """What the graph sent while intercepted, and how it is answered."""

    answer: Callable[[Outbound], Reply | Hang | Refused]
    """How every call is answered (the current phase's)."""
    calls: list[Call] = field(default_factory=list)
    """Every call of the current phase, in order."""
    refused: list[str] = field(default_factory=list)
    """Hosts of the connections and name lookups stopped (not through a patched client)."""
    released: threading.Event = field(default_factory=threading.Event)
    """Set to end every hang of the phase at once (a timeout, to the client)."""
    in_flight: int = 0
    """Calls being answered (hung ones included)."""
    last_call: float = 0.0
    """When the last call came in (monotonic)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, *, method: str, url: str, host: str, path: str, headers: Any,
               content: bytes, timeout_s: float | None, client: str, sync: bool
               ) -> tuple[Call, Reply | Hang | Refused]:
        """Count one call and answer it."""
        retry = str(headers.get(_RETRY_HEADER, "0"))
        scope = _REQUEST.get()
        traced_in, node = _context()
        call = Call(host=host, path=path, sdk_retry=int(retry) if retry.isdigit() else 0,
                    run_id=scope[0] if scope else None, traced_in=traced_in, node=node,
                    method=method.upper(), timeout_s=timeout_s, client=client, sync=sync,
                    keyed=any(str(k).lower() == "idempotency-key" for k in headers),
                    digest=hashlib.sha256(method.encode() + url.encode() + b"\0" + content)
                    .hexdigest()[:16])
        with self._lock:
            self.calls.append(call)
            self.last_call = time.monotonic()
        try:
            body = json.loads(content) if content else None
        except (ValueError, UnicodeDecodeError):
            body = None
        return call, self.answer(Outbound(method=method.upper(), url=url, host=host,
                                          path=path, body=body,
                                          route=scope[1] if scope else 0))

    @property
    def blocked(self) -> int:
        """How many connections and name lookups were stopped."""
        return len(self.refused)

    def to(self, host: str) -> int:
        """How many calls of this phase went to `host`."""
        return sum(1 for c in self.calls if c.host == host)

    @asynccontextmanager
    async def phase(self, answer: Callable[[Outbound], Reply | Hang | Refused]
                    ) -> AsyncIterator[Intercepted]:
        """Answer with `answer` inside, counting the phase's own calls.

        On the way out every hang is released, and what that sets off (a retry from a worker
        thread) is answered with a refusal before the next phase begins.
        """
        self.answer, self.calls, self.released = answer, [], threading.Event()
        try:
            yield self
        finally:
            self.released.set()
            self.answer = _refuse
            await self.asettle()

    def settle(self, *, quiet_s: float = 0.2, most_s: float = 3.0) -> None:
        """Wait (blocking) until no call is in flight and none came for `quiet_s`."""
        ends = time.monotonic() + most_s
        while time.monotonic() < ends:
            with self._lock:
                idle = self.in_flight == 0 and time.monotonic() - self.last_call >= quiet_s
            if idle:
                return
            time.sleep(0.02)

    async def asettle(self, *, quiet_s: float = 0.2, most_s: float = 3.0) -> None:
        """`settle` without blocking the event loop."""
        ends = time.monotonic() + most_s
        while time.monotonic() < ends:  # noqa: ASYNC110 - calls come from other threads too
            with self._lock:
                idle = self.in_flight == 0 and time.monotonic() - self.last_call >= quiet_s
            if idle:
                return
            await asyncio.sleep(0.02)

    def enter(self) -> None:
        """A call starts being answered."""
        with self._lock:
            self.in_flight += 1

    def leave(self) -> None:
        """A call was answered."""
        with self._lock:
            self.in_flight -= 1


def _clients() -> list[Any]:
    """The httpx packages in this process (the OpenAI SDK uses `httpx2`, most tools `httpx`)."""
    found = [httpx]
    try:
        import httpx2  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return found
    return [*found, httpx2]


def _host(url: Any) -> str:
    return str(url.host) + (f":{url.port}" if url.port else "")


def _response(module: Any, reply: Reply, request: Any) -> Any:
    status, body, headers = reply
    if isinstance(body, bytes):
        return module.Response(status, content=body, headers=headers, request=request)
    return module.Response(status, json=body, headers=headers, request=request)


def _read_timeout(request: Any) -> float | None:
    timeout = (request.extensions.get("timeout") or {}).get("read")
    return None if timeout is None else float(timeout)


_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _loopback(host: Any) -> bool:
    return isinstance(host, str) and (host in _LOOPBACK or host.startswith("127."))


@contextmanager
def guard_network(refused: list[str] | None = None) -> Iterator[list[str]]:
    """Refuse every connection and name lookup beyond this machine while inside.

    Yields the list of what was refused (`refused`, if given). `interlock assess` holds it for
    the life of its process: a thread still retrying after the assessment cannot get out.
    """
    refused = [] if refused is None else refused
    real_connect, real_lookup = socket.socket.connect, socket.getaddrinfo

    def connect(sock: socket.socket, address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else address
        if sock.family == getattr(socket, "AF_UNIX", None) or _loopback(host):
            return real_connect(sock, address)
        refused.append(str(host))
        raise ConnectionRefusedError(f"interlock assess: no network ({host})")

    def lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is None or _loopback(host) or (isinstance(host, str) and host.replace(
                ".", "").replace(":", "").isdigit()):
            return real_lookup(host, *args, **kwargs)
        refused.append(str(host))
        raise socket.gaierror(socket.EAI_NONAME, f"interlock assess: no network ({host})")

    socket.socket.connect = connect  # type: ignore[method-assign,assignment]
    socket.getaddrinfo = lookup
    try:
        yield refused
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.getaddrinfo = real_lookup


def _patch_requests(box: Intercepted, patch: Callable[[Any, str, Any], None]) -> None:
    try:
        import requests
        import requests.adapters
    except ImportError:  # pragma: no cover - requests comes with langsmith
        return

    def send(adapter: Any, request: Any, stream: bool = False, timeout: Any = None,
             **kwargs: Any) -> Any:
        read = timeout[1] if isinstance(timeout, tuple) else timeout
        url = urlsplit(request.url)
        content = request.body or b""
        box.enter()
        try:
            _, reply = box.record(
                method=request.method, url=request.url,
                host=url.hostname + (f":{url.port}" if url.port else ""), path=url.path,
                headers=request.headers,
                content=content.encode() if isinstance(content, str) else bytes(content),
                timeout_s=None if read is None else float(read), client="requests", sync=True)
            if isinstance(reply, Refused):
                raise requests.exceptions.ConnectionError("interlock assess: connection "
                                                          "refused", request=request)
            if isinstance(reply, Hang):
                released = box.released
                released.wait(reply.seconds if read is None else min(reply.seconds, read))
                if released.is_set():  # the probe is over: end the work, no retry
                    reply = _OVER
                elif read is not None and read <= reply.seconds:
                    raise requests.exceptions.ReadTimeout("interlock assess: the dependency "
                                                          "hangs", request=request)
                else:
                    reply = reply.then
        finally:
            box.leave()
        status, body, headers = reply
        response = requests.Response()
        response.status_code = status
        response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
        response.headers.update({"content-type": "application/json", **headers})
        response.url, response.request, response.reason = request.url, request, "interlock"
        return response

    patch(requests.adapters.HTTPAdapter, "send", send)


def _quick_sdk_backoff(patch: Callable[[Any, str, Any], None]) -> None:
    """The model SDKs' own backoff between retries, a millisecond: counted, not waited for.

    A 503 says `retry-after-ms: 1`, which they honour; a refused connection says nothing,
    and they would wait half a second, doubling, before each retry.
    """
    for name in ("openai._base_client", "anthropic._base_client"):
        if importlib.util.find_spec(name.split(".")[0]) is None:
            continue
        module = importlib.import_module(name)
        for constant in ("INITIAL_RETRY_DELAY", "MAX_RETRY_DELAY"):
            if hasattr(module, constant):
                patch(module, constant, 0.001)


@contextmanager
def intercepted(answer: Callable[[Outbound], Reply | Hang | Refused] = _refuse
                ) -> Iterator[Intercepted]:
    """Answer every httpx, httpx2 and `requests` call in-process with `answer`, while inside.

    Other connections and name lookups beyond this machine are refused. On the way out, hung
    calls are released and the calls they set off answered before anything is restored.
    """
    box = Intercepted(answer=answer)
    saved: list[tuple[Any, str, Any]] = []
    real_sleep = asyncio.sleep

    def patch(owner: Any, name: str, value: Any) -> None:
        saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    for module in _clients():
        def begin(request: Any, sync: bool,
                  module: Any = module) -> Reply | Hang | Refused:
            return box.record(method=request.method, url=str(request.url),
                              host=_host(request.url), path=request.url.path,
                              headers=request.headers, content=request.content or b"",
                              timeout_s=_read_timeout(request), client=module.__name__,
                              sync=sync)[1]

        async def handle_async(self: Any, request: Any, module: Any = module,
                               begin: Any = begin) -> Any:
            await request.aread()
            box.enter()
            try:
                reply = begin(request, False)
                if isinstance(reply, Refused):
                    raise module.ConnectError("interlock assess: connection refused",
                                              request=request)
                if not isinstance(reply, Hang):
                    return _response(module, reply, request)
                read = _read_timeout(request)
                wait = reply.seconds if read is None else min(reply.seconds, read)
                ends = time.monotonic() + wait
                released = box.released
                # Polled, not one long sleep: a release ends every hang at once.
                while not released.is_set() and (left := ends - time.monotonic()) > 0:
                    await real_sleep(min(left, 0.02))
                if released.is_set():  # the probe is over: end the work, no retry
                    return _response(module, _OVER, request)
                if read is not None and read <= reply.seconds:
                    raise module.ReadTimeout("interlock assess: the dependency hangs",
                                             request=request)
                return _response(module, reply.then, request)
            finally:
                box.leave()

        def handle_sync(self: Any, request: Any, module: Any = module,
                        begin: Any = begin) -> Any:
            request.read()
            box.enter()
            try:
                reply = begin(request, True)
                if isinstance(reply, Refused):
                    raise module.ConnectError("interlock assess: connection refused",
                                              request=request)
                if not isinstance(reply, Hang):
                    return _response(module, reply, request)
                read = _read_timeout(request)
                released = box.released
                released.wait(reply.seconds if read is None else min(reply.seconds, read))
                if released.is_set():  # the probe is over: end the work, no retry
                    return _response(module, _OVER, request)
                if read is not None and read <= reply.seconds:
                    raise module.ReadTimeout("interlock assess: the dependency hangs",
                                             request=request)
                return _response(module, reply.then, request)
            finally:
                box.leave()

        patch(module.AsyncHTTPTransport, "handle_async_request", handle_async)
        patch(module.HTTPTransport, "handle_request", handle_sync)
    _patch_requests(box, patch)
    _quick_sdk_backoff(patch)
    try:
        with guard_network(box.refused):
            try:
                yield box
            finally:
                box.answer = _refuse
                box.released.set()
                # What released hangs set off in worker threads is answered here, not sent
                # (an async caller settles first with `asettle`, which does not block).
                box.settle(quiet_s=0.5, most_s=2.0)
    finally:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)
