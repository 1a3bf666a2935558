"""The LangGraph server's edge (`"http": {"app": ...}` in langgraph.json): what reaches the graph.

One ASGI middleware in front of every route the server has, before its own auth:

- **keys on every path**: any request but `/ok`, `/`, `/info`, `/docs`, `/openapi.json` and
  `/metrics` (which hold nothing per user) needs a valid API key, whatever its headers say
  (the dev server's Studio scheme included); 401 otherwise;
- **bounded work**: a body larger than `INTERLOCK_MAX_BODY_BYTES` is refused before it is read
  (413); per actor, requests and runs per minute and runs in flight are limited (429 with
  `Retry-After`, for the client to retry); a run's input is checked before the graph sees it
  (message count, size, the user's role only: 422);
- **what a customer may ask**: messages only, no internal run options (403);
- **approvals bound to what was shown**: an answer must name the waiting proposal's digest,
  and a new request on a thread whose approval waits is refused (409), so nothing takes the
  place of a proposal under a reviewer;
- **ownership on copies**: a thread copied by staff is the copier's;
- **the model gateway** under `/v1/` (`graphs.gateway`, staff keys) when a model is configured.

The server's auth handlers (`graphs/auth.py`) check ownership and commands again; this edge
stops what they cannot see (bodies, rates, thread state).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections import defaultdict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware

from graphs.admission import (
    command_problem,
    customer_run_problem,
    input_problem,
    internal_keys,
    resume_problem,
    waiting_summary,
)
from graphs.core.actors import is_staff
from graphs.keys import ApiKey, KeyRing, identity_of, presented_key
from graphs.limits import ActorLimiter, Refusal
from graphs.settings import Settings

__all__ = ["Edge", "app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_A_THREAD = re.compile(r"^/threads/(?!(?:search|count)$)([^/]+)(?:/|$)")
"""A path about one thread (`/threads/search` and `/threads/count` are not; a thread a caller
named `search` is, on its own routes: `/threads/search/state`)."""
OPEN = frozenset({"/", "/ok", "/info", "/docs", "/openapi.json", "/metrics",
                  "/health", "/ready", "/live"})
"""Paths anyone may read: health, version and API docs, server-wide metrics."""
_THREAD_RUN = re.compile(r"^/threads/([^/]+)/runs(?:/(wait|stream))?$")
_STATELESS_RUN = re.compile(r"^/runs(?:/(wait|stream|batch))?$")
_CRON = re.compile(r"^(?:/threads/[^/]+)?/runs/crons$")
_COPY = re.compile(r"^/threads/([^/]+)/copy$")
_SERVED = re.compile(r"^/(?:threads|runs|assistants|store)(?:/|$)")
"""The route families the API serves; nothing else (the dev runtime's `/internal/*` and
`/deploy`, MCP, A2A, UI, profiling) is reachable through the edge, key or not."""
_NOT_SERVED = re.compile(r"^/threads/[^/]+/(?:commands|stream/events)$")
_RUN_AT = re.compile(r"^/threads/([^/]+)/runs/([^/]+)$")


@dataclass(frozen=True, slots=True)
class _Caller:
    entry: ApiKey
    identity: str
    kind: str

    @property
    def staff(self) -> bool:
        return is_staff(self.entry.actor)


class _Refused(Exception):
    def __init__(self, status: int, detail: str, *, code: str,
                 retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.code, self.retry_after_s = (status, detail, code,
                                                                   retry_after_s)


async def _respond(send: Send, status: int, body: dict[str, Any],
                   headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
        *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


class Edge:
    """ASGI middleware: keys, limits, and what a run request may carry (see the module)."""

    def __init__(self, app: ASGIApp, settings: Settings | None = None) -> None:
        self.app = app
        self._given = settings
        self._settings: Settings | None = None
        self._ring: KeyRing | None = None
        self._limiter: ActorLimiter | None = None
        self._model_gateway: ASGIApp | None = None

    def _setup(self) -> tuple[Settings, KeyRing, ActorLimiter]:
        if self._settings is None:  # settings are read on the first request, not at import
            self._settings = self._given or Settings.from_env()
            self._ring = KeyRing(self._settings.api_keys_path)
            self._limiter = ActorLimiter(self._settings.limits_for)
        assert self._ring is not None and self._limiter is not None
        return self._settings, self._ring, self._limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Admit or refuse one request (ASGI)."""
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # nothing is served there
            return
        if scope["type"] != "http" or scope["path"] in OPEN or _preflight(scope):
            await self.app(scope, receive, send)
            return
        settings, ring, limiter = self._setup()
        read = False
        try:
            caller = self._caller(scope, ring)
            gateway = scope["path"].startswith("/v1/")
            if (not _SERVED.match(scope["path"]) and not gateway) or _NOT_SERVED.match(
                    scope["path"]):
                raise _Refused(404, "not served here", code="not_served")
            if refusal := limiter.request(caller.identity, caller.kind):
                if gateway:  # no 429 to a model client: its SDK would retry it
                    await _respond(send, 424, {"error": {
                        "message": "Interlock refused the model call: this key's share of "
                                   f"requests is used for now ({refusal.reason}); do not "
                                   "retry at once", "type": "dependency_refused",
                        "code": "caller_limit", "param": None},
                        "interlock": {"retry_after_s": refusal.retry_after_s}},
                        [(b"x-should-retry", b"false"), (b"connection", b"close")])
                    return
                raise _limited(refusal)
            if gateway:  # the model gateway (`graphs.gateway`), for staff keys
                read = True  # it reads (or refuses) the body itself
                await self._gateway(settings)(scope, receive, send)
                return
            body = await _read_body(scope, receive, settings.max_body_bytes)
            read = True
            await self._admit(scope, caller, body, settings, limiter, receive, send)
        except _Refused as refused:
            extra = ([(b"retry-after", str(max(1, math.ceil(refused.retry_after_s))).encode())]
                     if refused.retry_after_s is not None else [])
            if not read:  # a body left unread is not drained (it may be megabytes): hang up
                extra.append((b"connection", b"close"))
            await _respond(send, refused.status, {"detail": refused.detail,
                                                  "code": refused.code}, extra)

    def _gateway(self, settings: Settings) -> ASGIApp:
        if self._model_gateway is None:
            if settings.model == "rules":
                raise _Refused(404, "no model gateway: the server has no model "
                                    "(INTERLOCK_MODEL=openai:<model>)", code="not_served")
            from graphs.gateway import Gateway

            self._model_gateway = Gateway(settings)
        return self._model_gateway

    def _caller(self, scope: Scope, ring: KeyRing) -> _Caller:
        headers = dict(scope.get("headers") or [])
        presented = presented_key(headers)
        if not presented:
            raise _Refused(401, "an API key is required (x-api-key: <key>)", code="no_key")
        # One stat of the key file (read again only when it changed) and one hash: inline, as a
        # thread hop would cost more than the work and queue behind a flood's lookups.
        entry = ring.find(presented)
        if entry is None:
            raise _Refused(401, "invalid API key", code="bad_key")
        return _Caller(entry=entry, identity=identity_of(entry), kind=entry.actor["kind"])

    async def _admit(self, scope: Scope, caller: _Caller, body: bytes, settings: Settings,
                     limiter: ActorLimiter, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if not caller.staff and (named := _A_THREAD.match(path)):
            await self._owned(scope, caller, named.group(1), creates=method == "POST" and bool(
                _THREAD_RUN.match(path)) and _creates(body))
        if method != "POST":
            await self.app(scope, _replayed(body, receive), send)
            return
        if path == "/threads":
            payload = _json(body) if body else {}
            if isinstance(payload, dict) and payload.get("supersteps") and not caller.staff:
                raise _Refused(403, "customers may not write a thread's state", code="forbidden")
            if isinstance(payload, dict) and not caller.staff:
                # A customer's thread id is theirs only if it is new: "do_nothing" would hand
                # back a thread someone else made under that id. The server reads the camel-case
                # aliases too (`threadId`, `ifExists`, which win over the snake-case names).
                named = payload.get("threadId") or payload.get("thread_id")
                rest = {k: v for k, v in payload.items()
                        if k not in ("threadId", "thread_id", "ifExists", "if_exists")}
                scope, body = _with_body(scope, {**rest, "thread_id": named,
                                                 "if_exists": "raise"} if named else rest)
            await self.app(scope, _replayed(body, receive), send)
            return
        if _COPY.match(path):
            await self._copy(scope, caller, _replayed(body, receive), send)
            return
        thread = _THREAD_RUN.match(path)
        stateless = _STATELESS_RUN.match(path)
        if not (thread or stateless or _CRON.match(path)):
            await self.app(scope, _replayed(body, receive), send)
            return
        payload = _json(body)
        batch = stateless is not None and stateless.group(1) == "batch"
        payloads = payload if batch and isinstance(payload, list) else [payload]
        for item in payloads:
            self._check_run(item, caller, settings)
        for item in payloads:
            _unowned(item)
        if thread and isinstance(payload, dict):
            payload = await self._check_thread(scope, thread.group(1), payload)
        scope, body = _with_body(scope, payload)  # what it says of owners, dropped
        if refusal := await limiter.runs(
                caller.identity, caller.kind, len(payloads),
                lambda tid, rid: self._still_running(scope, tid, rid)):
            raise _limited(refusal)
        # In flight from now: a run counts until the server says it ended, also when its
        # client hangs up on a wait or a stream and the run goes on.
        limiter.started(caller.identity, caller.kind)
        started: list[tuple[str, str]] = []

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                if where := _RUN_AT.match(headers.get(b"content-location", b"").decode()):
                    started.append((where.group(1), where.group(2)))
            await send(message)

        found = thread or stateless
        streamed = found is not None and found.group(1) in ("wait", "stream")
        try:
            status, response = await _captured(self.app, scope, _replayed(body, receive), watch,
                                               keep=not streamed)
        finally:
            limiter.finished(caller.identity, caller.kind)
        if 200 <= status < 300:
            for run in response if isinstance(response, list) else [response]:
                if isinstance(run, dict) and run.get("run_id") and run.get("thread_id"):
                    started.append((str(run["thread_id"]), str(run["run_id"])))
        for thread_id, run_id in started:
            limiter.background(caller.identity, caller.kind, thread_id, run_id)

    async def _owned(self, scope: Scope, caller: _Caller, thread_id: str, *,
                     creates: bool) -> None:
        """A customer's request on a thread that is not theirs: not found, like no thread.

        The server's auth rules say the same; this holds also on a server that applies them to
        some routes only (Aegra reads a thread's state without them). A run that creates its
        thread (`if_not_exists="create"`) may name one that does not exist yet.
        """
        status, thread = await _subrequest(self.app, scope, "GET", f"/threads/{thread_id}")
        if status == 404 and creates:
            return  # made as the caller once the run is checked (`_check_thread`)
        if status in (404, 422):  # not theirs (the server's rules hid it), or no such thread
            raise _Refused(404, f"thread {thread_id} not found", code="not_found")
        if status != 200:  # cannot tell whose it is: refuse rather than guess
            raise _Refused(503, "the thread's owner could not be checked; try again",
                           code="unavailable")
        metadata = (thread.get("metadata") if isinstance(thread, dict) else None) or {}
        owner = metadata.get("actor") or metadata.get("owner")
        if owner != caller.identity:
            raise _Refused(404, f"thread {thread_id} not found", code="not_found")

    def _check_run(self, payload: Any, caller: _Caller, settings: Settings) -> None:
        if not isinstance(payload, dict):
            raise _Refused(422, "a run request is a JSON object", code="bad_request")
        if problem := input_problem(payload.get("input"), settings):
            raise _Refused(422, problem, code="bad_input")
        if caller.staff:
            config = payload.get("config") if isinstance(payload.get("config"), dict) else {}
            found = internal_keys((config or {}).get("configurable"), staff=True) + (
                internal_keys(payload.get("context"), staff=True))
            if found:
                raise _Refused(403, f"internal run settings may not be set: "
                                    f"{', '.join(found[:5])}", code="forbidden")
            return
        if payload.get("command"):
            raise _Refused(403, command_problem(payload["command"]), code="forbidden")
        if problem := customer_run_problem(payload):
            raise _Refused(403, problem, code="forbidden")

    async def _check_thread(self, scope: Scope, thread_id: str, payload: dict[str, Any]
                            ) -> dict[str, Any]:
        """A new request may not take a waiting approval's place; an answer must name it.

        Returns the payload to send on: without `if_not_exists` when the thread exists, so a
        run cannot make an existing thread look like one it created (its owner stays).
        """
        status, found = await _subrequest(self.app, scope, "GET", f"/threads/{thread_id}")
        if status == 404 and payload.get("if_not_exists") == "create":
            # No thread the caller may see under that id. Made here, as the caller, so that it
            # is theirs on every server; if one exists (someone else's), the make fails and it
            # stays hidden (Aegra ignores a run's `if_not_exists`: it would run on the other's).
            status, found = await _subrequest(self.app, scope, "POST", "/threads",
                                              {"thread_id": thread_id, "if_exists": "raise"})
            if status == 409:
                raise _Refused(404, f"thread {thread_id} not found", code="not_found")
            status = 200 if 200 <= status < 300 else status
        if status in (404, 422):
            return payload  # not found or not theirs: the server itself answers
        if status != 200 or not isinstance(found, dict):
            # Cannot tell whether an approval waits: refuse rather than let one be skipped.
            raise _Refused(503, "the thread could not be read; try again", code="unavailable")
        if "if_not_exists" in payload:
            payload = {k: v for k, v in payload.items() if k != "if_not_exists"}
        # Whose thread it is, as the thread records it, for the graph (`server_owner`): a
        # server that does not pass the thread's metadata on to the run (Aegra) too.
        recorded = (found.get("metadata") or {})
        if owner := recorded.get("actor") or recorded.get("owner"):
            config = dict(payload.get("config") or {})
            config["metadata"] = {**(config.get("metadata") or {}), "actor": owner}
            payload = {**payload, "config": config}
        command = payload.get("command") if isinstance(payload.get("command"), dict) else None
        resuming = command is not None and command.get("resume") is not None
        if payload.get("input") is None and not resuming:
            return payload
        status, state = await _subrequest(self.app, scope, "GET",
                                          f"/threads/{thread_id}/state")
        if status != 200 or not isinstance(state, dict):
            raise _Refused(503, "the thread's state could not be read; try again",
                           code="unavailable")
        pending = [i for i in state.get("interrupts") or [] if isinstance(i, dict)]
        approvals = [i for i in pending if isinstance(i.get("value"), dict)
                     and i["value"].get("digest")]
        if resuming:
            assert command is not None
            if problem := resume_problem(command["resume"], approvals):
                raise _Refused(409, problem, code="approval_not_bound")
            return payload
        if pending:
            waiting = approvals[0]["value"] if approvals else {}
            what = f" ({waiting_summary(waiting)})" if waiting else ""
            raise _Refused(409, f"this conversation waits for a decision by support staff"
                                f"{what}; send a new request once it is decided",
                           code="awaiting_approval")
        return payload

    async def _still_running(self, scope: Scope, thread_id: str, run_id: str) -> bool:
        status, run = await _subrequest(self.app, scope, "GET",
                                        f"/threads/{thread_id}/runs/{run_id}")
        return status == 200 and isinstance(run, dict) and run.get("status") in (
            "pending", "running")

    async def _copy(self, scope: Scope, caller: _Caller, receive: Receive, send: Send) -> None:
        """Copy a thread; the copy is the copier's, and runs on the dev server cleanly."""
        start: Message = {}

        async def hold(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)

        status, copied = await _captured(self.app, scope, receive, hold)
        if 200 <= status < 300 and isinstance(copied, dict) and copied.get("thread_id"):
            new_id = str(copied["thread_id"])
            _repair_inmem_copy(new_id)
            if caller.staff:
                patched, thread = await _subrequest(
                    self.app, scope, "PATCH", f"/threads/{new_id}",
                    {"metadata": {"owner": caller.identity, "actor": caller.identity}})
                if 200 <= patched < 300 and isinstance(thread, dict):
                    copied = thread
        headers = [(k, v) for k, v in start.get("headers") or []
                   if k not in (b"content-length", b"content-type")]
        await _respond(send, status, copied if isinstance(copied, dict) else {"detail": copied},
                       headers)


def _preflight(scope: Scope) -> bool:
    """A CORS preflight (answered by the server's CORS middleware, before any key)."""
    return scope["method"] == "OPTIONS" and any(
        k == b"access-control-request-method" for k, _ in scope.get("headers") or [])


def _limited(refusal: Refusal) -> _Refused:
    return _Refused(429, refusal.detail, code=refusal.reason,
                    retry_after_s=refusal.retry_after_s)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError:
        raise _Refused(422, "the request body is not JSON", code="bad_request") from None


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole body, refused (413) as soon as it would pass `limit` bytes."""
    headers = dict(scope.get("headers") or [])
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _Refused(413, f"the request body is {int(declared):,} bytes; the limit is "
                            f"{limit:,}", code="too_large")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _Refused(413, f"the request body is over {limit:,} bytes", code="too_large")
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _replayed(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the body read already, then what the client sends next."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


async def _captured(app: ASGIApp, scope: Scope, receive: Receive, send: Send | None, *,
                    keep: bool = True) -> tuple[int, Any]:
    """Run `app`, passing its response on to `send` (if given) and returning it parsed.

    `keep=False` passes a streamed response on without keeping it (its body is not returned).
    """
    status = 500
    chunks: list[bytes] = []

    async def capture(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        elif message["type"] == "http.response.body" and keep:
            chunks.append(message.get("body", b""))
        if send is not None:
            await send(message)

    await app(scope, receive, capture)
    try:
        return status, json.loads(b"".join(chunks) or b"null") if keep else None
    except ValueError:
        return status, None


_OWNER_KEYS = ("owner", "actor")
"""Metadata naming a thread's owner: set by the server's rules and this edge, never a caller."""


def _unowned(payload: Any) -> None:
    """Drop what a run request says about whose thread it is (in place)."""
    if not isinstance(payload, dict):
        return
    for holder in (payload.get("metadata"), (payload.get("config") or {}).get("metadata")
                   if isinstance(payload.get("config"), dict) else None):
        if isinstance(holder, dict):
            for key in _OWNER_KEYS:
                holder.pop(key, None)


def _with_body(scope: Scope, payload: Any) -> tuple[Scope, bytes]:
    """The request with `payload` as its JSON body (its length set again)."""
    body = json.dumps(payload).encode()
    headers = [(k, v) for k, v in scope.get("headers") or [] if k != b"content-length"]
    return {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}, body


def _creates(body: bytes) -> bool:
    """Whether a run request asks to create its thread if there is none."""
    payload = _json(body) if body else None
    return isinstance(payload, dict) and payload.get("if_not_exists") == "create"


async def _subrequest(app: ASGIApp, scope: Scope, method: str, path: str,
                      body: Any = None) -> tuple[int, Any]:
    """Ask the server itself, as the caller (same headers, so the same auth applies)."""
    data = json.dumps(body).encode() if body is not None else b""
    headers = [(k, v) for k, v in scope.get("headers") or []
               if k not in (b"content-length", b"content-type", b"accept-encoding")]
    headers += [(b"content-length", str(len(data)).encode()),
                (b"content-type", b"application/json")]
    inner = {**scope, "method": method, "path": path, "raw_path": path.encode(),
             "query_string": b"", "headers": headers}

    sent = False
    done = asyncio.Event()

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": data, "more_body": False}
        await done.wait()  # no client to hang up: "disconnect" only once the answer is in
        return {"type": "http.disconnect"}

    try:
        return await _captured(app, inner, receive, None)
    finally:
        done.set()


def _repair_inmem_copy(thread_id: str) -> None:
    """Make a dev-server copy runnable: its in-memory checkpoints as the runtime expects them.

    langgraph-runtime-inmem 0.36 stores a copied thread's checkpoints as a plain dict (a JSON
    round trip), where every other thread has a `defaultdict`: the first checkpoint of a new
    namespace (a worker subgraph) then raises `KeyError` in the copy, after the worker ran.
    """
    try:
        from langgraph_runtime_inmem.checkpoint import (  # type: ignore[import-untyped]
            Checkpointer,
        )
    except ImportError:  # another runtime: nothing to repair
        return
    storage = Checkpointer().storage
    copied = storage.get(thread_id)
    if isinstance(copied, dict) and not isinstance(copied, defaultdict):
        storage[thread_id] = defaultdict(dict, copied)


app = Starlette(middleware=[Middleware(Edge)])
"""The app `langgraph.json` mounts: no routes of its own, only the edge around the server's."""
