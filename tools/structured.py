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
from typing import Any, Literal

__all__ = ["MODES", "LEARNED", "Mode", "StructuredModes", "json_mode_instruction",
           "mode_refused"]

Mode = Literal["json_schema", "function_calling", "json_mode"]
MODES: tuple[Mode, ...] = ("json_schema", "function_calling", "json_mode")
"""Tried in this order: the strictest first."""

_SAYS_MODE = ("response_format", "response format", "json_schema", "json schema", "json_object",
              "structured output", "grammar", "tool_choice", "tool choice", "tools", "tool call",
              "function call", "functions")
"""What a refusal of a mode names (a 400 about the context length does not)."""
_SAYS_UNSUPPORTED = ("not support", "unsupported", "not implemented", "not available",
                     "requires", "not allowed", "invalid", "unknown", "unrecognized",
                     "not enabled", "extra inputs", "extra_forbidden", "only")


class StructuredModes:
    """What each server refused, learned from its answers (thread-safe; in this process)."""

    def __init__(self) -> None:
        self._refused: dict[str, set[Mode]] = {}
        self._lock = threading.Lock()

    def order(self, server: str) -> list[Mode]:
        """The modes to try on `server`, the ones it refused left out."""
        with self._lock:
            refused = self._refused.get(server, set())
            return [m for m in MODES if m not in refused]

    def refuse(self, server: str, mode: Mode) -> None:
        """`server` does not take `mode`."""
        with self._lock:
            self._refused.setdefault(server, set()).add(mode)

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


def mode_refused(status: int, body: Any) -> bool:
    """Whether an error answer says the server does not take the structured-output mode asked.

    A 4xx or 5xx whose message names the mode (`response_format`, `json_schema`, tools) and says
    it is unsupported or invalid. A 429, a 408 or a bare 5xx is something else.
    """
    if status in (408, 429) or status < 400:
        return False
    text = (json.dumps(body) if not isinstance(body, str) else body).lower()
    return any(s in text for s in _SAYS_MODE) and any(s in text for s in _SAYS_UNSUPPORTED)


def json_mode_instruction(schema: dict[str, Any]) -> str:
    """The system message that gives JSON mode the schema (the server cannot take it)."""
    return ("Answer with one JSON object and nothing else. It must validate against this JSON "
            "schema:\n" + json.dumps(schema, separators=(",", ":")))
