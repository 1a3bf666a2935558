"""Structured output against the OpenAI-compatible servers people run: which mode a server takes.

Servers differ: OpenAI takes `response_format` of type `json_schema`; llama.cpp-based servers
take only `json_object` (and answer a `json_schema` with a 400, or even a 500); some take only
tool calls, some only JSON mode. A model client tries the modes in order (`json_schema`, then
`function_calling`, then `json_mode`, the schema then given in the prompt), remembers per server
and model which ones it refused, and goes straight to the first one left next time. A refusal of
a mode is the server saying what it does not support, never an outage: it is not retried and it
counts against no breaker.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

__all__ = ["FORGET_AFTER_S", "LEARNED", "MODES", "Mode", "StructuredModes",
           "error_message", "json_mode_instruction", "mode_refused"]

Mode = Literal["json_schema", "function_calling", "json_mode"]
MODES: tuple[Mode, ...] = ("json_schema", "function_calling", "json_mode")
"""Tried in this order: the strictest first."""

_PARAMETERS = ("response_format", "response format", "json_schema", "json schema",
               "json_object", "structured output", "grammar", "tool_choice", "tool choice",
               "tools", "tool calling", "function calling", "functions")
"""What a refusal of a mode names: the request's parameter for it."""
_UNSUPPORTED = ("not support", "unsupported", "not implemented", "not available", "requires",
                "not allowed", "unknown", "unrecognized", "not enabled", "extra inputs",
                "extra_forbidden", "not permitted", "only")
"""How it says that the server does not take it."""
_INVALID = ("response_format", "json_schema", "tool_choice")
"""Parameters whose being "invalid" means the mode (a tool call's invalid JSON does not)."""
_STATUSES = (400, 404, 405, 415, 422, 500, 501)
"""What such a refusal is answered with (a 502, 503 or 504 is a proxy or an outage)."""
FORGET_AFTER_S = 3600.0
"""A refused mode is asked again after this long: servers are upgraded, and a refusal could
have been misread."""


class StructuredModes:
    """What each server refused, learned from its answers (thread-safe; in this process)."""

    def __init__(self, forget_after_s: float = FORGET_AFTER_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._refused: dict[str, dict[Mode, float]] = {}
        self._lock = threading.Lock()
        self._forget_after_s = forget_after_s
        self._clock = clock

    def order(self, server: str) -> list[Mode]:
        """The modes to try on `server`, the ones it refused lately left out."""
        now = self._clock()
        with self._lock:
            refused = self._refused.get(server, {})
            for mode in [m for m, at in refused.items() if now - at > self._forget_after_s]:
                del refused[mode]
            return [m for m in MODES if m not in refused]

    def refuse(self, server: str, mode: Mode) -> None:
        """`server` does not take `mode`."""
        with self._lock:
            self._refused.setdefault(server, {})[mode] = self._clock()

    def accepted(self, server: str) -> Mode | None:
        """The mode `server` is asked in now (None: it refused every one)."""
        left = self.order(server)
        return left[0] if left else None

    def forget(self, server: str | None = None) -> None:
        """Learn again (one server, or all): a server upgraded may take more."""
        with self._lock:
            if server is None:
                self._refused.clear()
            else:
                self._refused.pop(server, None)


LEARNED = StructuredModes()
"""Shared by every model client of this process (one graph built per request learns once)."""


def mode_refused(status: int, message: str) -> bool:
    """Whether an error answer says the server does not take the structured-output mode asked.

    `message`: the error's own message (not the whole body: its `type` says "invalid" of every
    bad request). A 400, 404, 405, 415, 422, 500 or 501 whose message names the mode's
    parameter and says it is unsupported (or, for `response_format`, `json_schema` and
    `tool_choice`, invalid). A 429, a 408, a 502-504 or a message about something else (the
    context length, a tool call's malformed JSON) is not.
    """
    if status not in _STATUSES:
        return False
    text = message.lower()
    if not any(p in text for p in _PARAMETERS):
        return False
    return any(s in text for s in _UNSUPPORTED) or (
        "invalid" in text and any(p in text for p in _INVALID))


def error_message(body: Any, fallback: str = "") -> str:
    """The message of an OpenAI-style error body (`{"error": {"message": ...}}`, or a string)."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return body if isinstance(body, str) else fallback


def json_mode_instruction(schema: dict[str, Any]) -> str:
    """The system message that gives JSON mode the schema (the server cannot take it)."""
    return ("Answer with one JSON object and nothing else. It must validate against this JSON "
            "schema:\n" + json.dumps(schema, separators=(",", ":")))
