"""HTTP plumbing shared by the dependency clients: one `httpx.AsyncClient` per event loop."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

import httpx

from tools.errors import DependencyError

__all__ = ["Handler", "LoopClients", "classify", "json_body"]

Handler = Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]
"""An in-process HTTP handler (a simulator), served through `httpx.MockTransport`."""


class LoopClients:
    """Hands out one `httpx.AsyncClient` per running event loop (clients are loop-bound)."""

    def __init__(self, base_url: str, *, handler: Handler | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.base_url = base_url
        self.handler = handler
        self.headers = headers or {}
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                                  httpx.AsyncClient] = (
            weakref.WeakKeyDictionary())

    def get(self) -> httpx.AsyncClient:
        """The client for the running loop."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            transport = httpx.MockTransport(self.handler) if self.handler else None
            client = httpx.AsyncClient(base_url=self.base_url, transport=transport,
                                       headers=self.headers,
                                       limits=httpx.Limits(max_connections=64))
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        """Close the running loop's client (another loop's clients close with their loop)."""
        loop = asyncio.get_running_loop()
        client = self._clients.pop(loop, None)
        if client is not None:
            await client.aclose()


def classify(dependency: str, response: httpx.Response) -> DependencyError:
    """The error for a non-success answer: 408/429/5xx are retryable, other 4xx are not."""
    status = response.status_code
    retry_after = _retry_after(response.headers.get("Retry-After"))
    try:
        body: Any = response.json()
        code = str(body.get("error", "")) if isinstance(body, dict) else ""
    except ValueError:
        code = ""
    if status == 429:
        return DependencyError("throttled", dependency=dependency, retryable=True, status=status,
                               retry_after_s=retry_after, reason="throttled")
    if status == 408 or status >= 500:
        # A 503 in the service's own words (its JSON error) says it is unavailable; one
        # without them may come from a proxy in front, after the request went through.
        reason = ("gateway_timeout" if status == 504 else
                  "upstream_unavailable" if status == 503 and not code else "unavailable")
        return DependencyError(f"HTTP {status} {code}".strip(), dependency=dependency,
                               retryable=True, status=status, retry_after_s=retry_after,
                               reason=reason)
    return DependencyError(f"HTTP {status} {code}".strip(), dependency=dependency,
                           retryable=False, status=status, reason=code or "rejected")


def json_body(dependency: str, response: httpx.Response) -> Any:
    """The answer's JSON body; an answer that is not JSON is a non-retryable `malformed`."""
    try:
        return response.json()
    except ValueError:
        raise DependencyError("malformed answer: not JSON", dependency=dependency,
                              retryable=False, status=response.status_code,
                              reason="malformed") from None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # HTTP-date form: treat as unknown and let backoff decide
