"""The governed model gateway: an OpenAI-compatible endpoint in front of the configured model.

`POST /v1/chat/completions` and `GET /v1/models` (`interlock gateway`). Foreign agents (an
AutoGen team, a CrewAI crew, any OpenAI client) get their model here, with their own retries
set to zero: every completion is one governed call of the `model` dependency, under its
breaker, the retry budget, its bulkhead and per-call timeout, and the caller's deadline.

- `x-interlock-deadline-ms`: what the caller has left (ms); `x-interlock-thread` and
  `x-interlock-step`: whose call it is. The governor's events (attempts, retries, breaker
  transitions, refusals) come back under the answer's `interlock` key, attributed to both, and
  the spans it traces carry them (the LangSmith client Interlock installs redacts personal data
  before anything is sent).
- A refusal (breaker open, budget spent, deadline, bulkhead full, or the model still failing
  after the governor's retries) is `424 Failed Dependency` with `x-should-retry: false` and an
  error of type `dependency_refused`: no client's retry loop fires on it (the OpenAI SDK retries
  408, 409, 429 and 5xx; CrewAI's wrapper 429 and texts saying "rate limit"), and its text
  never says either.
- What the model's server refuses on its merits (a 400 for a bad request, a structured-output
  mode it does not take) is passed on as it answered, once, with `x-should-retry: false` (and
  as a 400 where it came as a status clients retry: llama.cpp refuses a mode with a 500): the
  caller can adapt. The server refusing the gateway's own credentials is a refusal (424): the
  caller's key is not at fault.
- The caller's key must be staff's (`interlock keys add --staff`): a customer's key does not
  buy model calls.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx

from graphs.core.clock import Clock
from graphs.core.errors import ConfigError
from graphs.keys import KeyRing, presented_key
from graphs.settings import Settings
from tools.errors import DependencyError
from tools.governor import CallContext, CallGovernor, Governor
from tools.spans import span
from tools.structured import error_message, mode_refused

__all__ = ["DEADLINE_HEADER", "REFUSED_STATUS", "STEP_HEADER", "THREAD_HEADER", "Gateway",
           "serve"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEADLINE_HEADER = "x-interlock-deadline-ms"
THREAD_HEADER = "x-interlock-thread"
STEP_HEADER = "x-interlock-step"
REFUSED_STATUS = 424
"""Failed Dependency: outside every retrying client's list."""
_log = logging.getLogger(__name__)
_REFUSALS = ("breaker_open", "retry_budget_exhausted", "bulkhead_full", "deadline")
_MAX_ANSWER_BYTES = 8 * 1024 * 1024
"""A model's answer larger than this is refused as unusable."""


class _Answer(Exception):
    def __init__(self, status: int, body: dict[str, Any],
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or []


def _problem(status: int, code: str, message: str) -> _Answer:
    return _Answer(status, {"error": {"message": message, "type": "invalid_request_error",
                                      "code": code, "param": None}})


class Gateway:
    """The gateway as an ASGI application (mounted on a server, or served alone)."""

    def __init__(self, settings: Settings, *, governor: CallGovernor | None = None,
                 upstream: httpx.AsyncClient | None = None, clock: Clock | None = None) -> None:
        provider, _, name = settings.model.partition(":")
        if provider != "openai" or not name:
            raise ConfigError("the gateway needs a model: INTERLOCK_MODEL=openai:<model> and "
                              "OPENAI_BASE_URL", variable="INTERLOCK_MODEL")
        self.model = name
        self._base = (settings.openai_base_url or "https://api.openai.com/v1").rstrip("/")
        self._key = settings.openai_api_key
        self._clock = clock or Clock()
        self._governor = governor or Governor(settings, clock=self._clock)
        self._http = upstream or httpx.AsyncClient()
        self._ring = KeyRing(settings.api_keys_path)
        self._max_body = settings.max_body_bytes

    async def aclose(self) -> None:
        """Close the connections to the model's server."""
        await self._http.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request (ASGI)."""
        if scope["type"] != "http":
            return
        read = [False]

        async def reading() -> Message:
            message = await receive()
            read[0] = read[0] or not message.get("more_body")
            return message

        try:
            answer = await self._handle(scope, reading)
        except _Answer as given:
            answer = given
        except Exception:  # a defect of ours: typed, and not retried by the client either
            _log.exception("the model gateway failed")
            answer = self._refusal(DependencyError("gateway failure", dependency="model",
                                                   retryable=False, reason="internal"),
                                   CallContext())
        closing = [] if read[0] else [(b"connection", b"close")]  # a body left unread
        data = json.dumps(answer.body).encode()
        await send({"type": "http.response.start", "status": answer.status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
            *answer.headers, *closing]})
        await send({"type": "http.response.body", "body": data})

    async def _handle(self, scope: Scope, receive: Receive) -> _Answer:
        path, method = scope["path"].rstrip("/"), scope["method"]
        if path not in ("/v1/models", "/v1/chat/completions"):
            raise _problem(404, "not_found", f"no route {path}: the gateway serves "
                                             "/v1/chat/completions and /v1/models")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers") or []}
        entry = self._ring.find(presented_key(headers) or "")
        if entry is None:
            raise _problem(401, "invalid_api_key", "an Interlock API key is required "
                                                   "(Authorization: Bearer <key>)")
        if entry.actor["kind"] != "staff":
            raise _problem(403, "forbidden", "the model gateway is for staff keys")
        if path == "/v1/models":
            if method != "GET":
                raise _problem(405, "method_not_allowed", "GET /v1/models")
            return _Answer(200, {"object": "list", "data": [
                {"id": self.model, "object": "model", "created": 0, "owned_by": "interlock"}]})
        if method != "POST":
            raise _problem(405, "method_not_allowed", "POST /v1/chat/completions")
        body = await self._body(receive, headers)
        ctx = self._context(headers)
        return await self._complete(body, ctx)

    async def _body(self, receive: Receive, headers: dict[str, str]) -> dict[str, Any]:
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_body:
            raise _problem(413, "too_large", f"the body is over {self._max_body} bytes")
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if len(raw) > self._max_body:
                raise _problem(413, "too_large", f"the body is over {self._max_body} bytes")
            if not message.get("more_body"):
                break
        try:
            body = json.loads(raw)
        except ValueError:
            raise _problem(400, "bad_json", "the body is not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            raise _problem(400, "bad_request", "a chat completion needs `messages` (a list)")
        if body.get("stream"):
            raise _problem(400, "stream_unsupported", "the gateway answers whole completions: "
                                                      "send `stream: false`")
        return body

    def _context(self, headers: dict[str, str]) -> CallContext:
        deadline = None
        if (raw := headers.get(DEADLINE_HEADER)) is not None:
            try:
                left_ms = float(raw)
            except ValueError:
                left_ms = math.nan
            if not math.isfinite(left_ms) or left_ms < 0:
                raise _problem(400, "bad_deadline", f"{DEADLINE_HEADER} is the milliseconds "
                                                    "the caller has left (a number >= 0)")
            deadline = self._clock.monotonic() + left_ms / 1000
        return CallContext(thread_id=headers.get(THREAD_HEADER) or None,
                           step_id=headers.get(STEP_HEADER) or None, deadline=deadline)

    async def _complete(self, body: dict[str, Any], ctx: CallContext) -> _Answer:
        asked = {**body, "model": self.model}
        refused: list[httpx.Response] = []
        auth = {"authorization": f"Bearer {self._key}"} if self._key else {}

        async def attempt(limit_s: float) -> dict[str, Any]:
            answer = await self._http.post(f"{self._base}/chat/completions", json=asked,
                                           headers=auth, timeout=limit_s)
            status = answer.status_code
            if len(answer.content) > _MAX_ANSWER_BYTES:
                raise DependencyError("the model's answer is too large", dependency="model",
                                      retryable=False, reason="malformed_output")
            if status < 400:
                try:
                    parsed = answer.json()
                except ValueError:
                    raise DependencyError("the model's answer is not JSON", dependency="model",
                                          retryable=False, reason="malformed_output") from None
                if not isinstance(parsed, dict):
                    raise DependencyError("the model's answer is not an object",
                                          dependency="model", retryable=False,
                                          reason="malformed_output")
                return parsed
            try:
                said = error_message(answer.json(), answer.text[:2000])
            except ValueError:
                said = answer.text[:2000]
            if status in (401, 403):  # the gateway's own credentials: not the caller's to fix
                raise DependencyError(f"HTTP {status}", dependency="model", retryable=False,
                                      status=status, reason="upstream_auth")
            retryable = (status in (408, 429) or status >= 500) and not mode_refused(status,
                                                                                      said)
            if not retryable:
                refused.append(answer)
            raise DependencyError(f"HTTP {status}", dependency="model", retryable=retryable,
                                  status=status, retry_after_s=_retry_after(answer),
                                  reason=("throttled" if status == 429 else "unavailable"
                                          if retryable else "rejected"))

        with span("gateway.chat_completions", run_type="llm",
                  tags=["gateway", f"thread:{ctx.thread_id or ''}"],
                  metadata={"plan_step": ctx.step_id, "thread_id": ctx.thread_id},
                  inputs={"messages": body["messages"]}):
            try:
                completion = await self._governor.call("model", attempt, ctx,
                                                       action="chat_completions")
            except DependencyError as error:
                if refused and error.reason == "rejected":  # the server's own verdict
                    answer = refused[-1]
                    try:
                        passed = answer.json()
                    except ValueError:
                        passed = {"error": {"message": answer.text[:2000],
                                            "type": "upstream_error"}}
                    # As it answered, but under a status no client retries (a refused mode
                    # can come as a 500, llama.cpp's; a 409 is retried by the OpenAI SDK).
                    status = answer.status_code
                    return _Answer(
                        400 if status >= 500 or status in (408, 409) else status,
                        {**(passed if isinstance(passed, dict) else {"error": passed}),
                         "interlock": {**_attributed(ctx), "upstream_status": status}},
                        [(b"x-should-retry", b"false")])
                return self._refusal(error, ctx)
        return _Answer(200, {**completion, "interlock": _attributed(ctx)})

    def _refusal(self, error: DependencyError, ctx: CallContext) -> _Answer:
        why = {"breaker_open": "the model's circuit breaker is open",
               "retry_budget_exhausted": "the retry budget for the model is spent",
               "bulkhead_full": "every slot for model calls is busy",
               "deadline": "no time is left before the caller's deadline",
               "throttled": "the model's server is throttling (retried by Interlock)",
               "timeout": "the model did not answer in time (retried by Interlock)",
               "malformed_output": "the model's answer was unusable",
               "upstream_auth": "the model's server refused the gateway's own credentials "
                                "(the operator's to fix)",
               "internal": "the gateway failed"}.get(
            error.reason, "the model is failing (retried by Interlock)")
        body = {"error": {"message": f"Interlock refused the model call: {why}. Do not retry "
                                     "it: the governor already has.",
                          "type": "dependency_refused", "code": error.reason,
                          "param": None},
                "interlock": {**_attributed(ctx), "dependency": "model",
                              "reason": error.reason, "refused": error.reason in _REFUSALS,
                              "retry_after_s": error.retry_after_s}}
        return _Answer(REFUSED_STATUS, body, [(b"x-should-retry", b"false")])


def _retry_after(answer: httpx.Response) -> float | None:
    raw = answer.headers.get("retry-after")
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def _attributed(ctx: CallContext) -> dict[str, Any]:
    return {"thread_id": ctx.thread_id, "step_id": ctx.step_id, "events": list(ctx.events)}


async def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve the gateway until interrupted; prints its base URL (with `/v1`) once listening."""
    import sys

    from graphs.tracing import configure_tracing
    from tools.simulators.serve import serving

    configure_tracing()
    gateway = Gateway(settings)
    try:
        async with serving(gateway, host=host, port=port) as listening:
            print(f"{listening.url}/v1", flush=True)
            sys.stdout.flush()
            await listening.stopped
    finally:
        await gateway.aclose()
