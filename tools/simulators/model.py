"""An OpenAI-compatible chat-completions endpoint, simulated, for the model dependency.

It answers `POST /v1/chat/completions` with a completion whose content is the JSON a planner
function returns for the last user message, so `ChatOpenAI` structured output works end to end
without a network; faults (429 with `Retry-After`, 503, latency) make throttling demonstrable.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from graphs.core.clock import Clock
from tools.policy import FaultSpec
from tools.simulators.faults import FaultInjector, SimulatorStats

__all__ = ["ModelSimulator"]


class ModelSimulator:
    """Plans with `plan(text) -> dict`, answered in the OpenAI chat-completions format."""

    name = "model"

    def __init__(self, plan: Callable[[str], dict[str, Any]], *,
                 faults: FaultSpec | None = None, clock: Clock | None = None) -> None:
        self._plan = plan
        self.faults = FaultInjector(faults, clock)
        self.stats = SimulatorStats()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        """Handle one request."""
        self.stats.calls += 1
        response = await self._handle(request)
        self.stats.statuses[response.status_code] += 1
        return response

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        if (faulted := await self.faults.before()) is not None:
            if faulted.status_code == 429:
                return httpx.Response(429, headers=faulted.headers, json={"error": {
                    "message": "Rate limit reached", "type": "rate_limit_exceeded"}})
            return httpx.Response(faulted.status_code, json={"error": {
                "message": "The server is overloaded", "type": "server_error"}})
        if request.method != "POST" or not request.url.path.endswith("/chat/completions"):
            return httpx.Response(404, json={"error": {"message": "not found"}})
        body = json.loads(request.content or b"{}")
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        text = users[-1].get("content", "") if users else ""
        content = json.dumps(self._plan(text if isinstance(text, str) else str(text)))
        return httpx.Response(200, json={
            "id": "chatcmpl-sim", "object": "chat.completion", "created": 0,
            "model": body.get("model", "sim"),
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": content,
                                     "refusal": None}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
