"""LangSmith tracing: on with `LANGSMITH_TRACING=true`, redacted, and never in the way.

- Personal data (emails, phone and card-like numbers, street addresses) is redacted from every
  run's inputs, outputs, metadata and errors by the client's anonymizer, before anything is
  queued to leave the process.
- An unreachable endpoint costs nothing at run time (traces go from a background thread) and
  little at exit: `close_tracing` waits at most a moment, the background threads are daemons,
  and short network timeouts keep a silent endpoint from holding them.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from guards.output import redact

if TYPE_CHECKING:  # the client (half a second of imports) loads only when tracing is on
    from langsmith import Client

__all__ = ["close_tracing", "configure_tracing", "redact_payload", "tracing_requested"]

_TRUE = ("1", "true", "yes", "on")
_installed: Client | None = None


def tracing_requested() -> bool:
    """Whether the environment asks for LangSmith tracing."""
    return any(os.environ.get(k, "").lower() in _TRUE for k in ("LANGSMITH_TRACING",
                                                                "LANGCHAIN_TRACING_V2"))


def redact_payload(value: Any) -> Any:
    """`value` with personal data replaced in every string it holds."""
    if isinstance(value, str):
        return redact(value)[0]
    if isinstance(value, dict):
        return {k: redact_payload(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_payload(v) for v in value]
    return value


def configure_tracing(*, session: Any = None, timeout_s: float = 2.0) -> Client | None:
    """Install a redacting, non-blocking LangSmith client if tracing is requested.

    Idempotent: every entry point (the CLI, `build_graph` under the LangGraph server or the
    Python API) calls it, and the client installed stays until `close_tracing`. A `session`
    (tests: a fake endpoint) always installs a new client.
    """
    global _installed
    if session is None and _installed is not None:
        return _installed
    if not tracing_requested() and session is None:
        return None
    import langsmith
    from langsmith import Client
    from langsmith.schemas import LangSmithInfo
    from urllib3.util.retry import Retry

    # Daemon background threads: a process never waits at exit for a silent endpoint.
    os.environ.setdefault("LANGSMITH_USE_DAEMON", "true")
    # The client's own complaints about an unreachable endpoint would repeat on every batch;
    # `close_tracing` says it once.
    logging.getLogger("langsmith").setLevel(logging.CRITICAL)
    ms = int(timeout_s * 1000)
    client = Client(
        session=session, timeout_ms=(ms, ms), retry_config=Retry(total=1, backoff_factor=0),
        anonymizer=redact_payload,
        # Known in advance, so the client does not ask the endpoint (and wait) at start;
        # without the server's word that it accepts compressed runs, they go uncompressed.
        info=LangSmithInfo(version="unknown"),
    )
    # Enabled explicitly: LangSmith caches what the environment said when first asked.
    langsmith.configure(client=client, enabled=True)
    _installed = client
    return client


def close_tracing(client: Client | None, *, timeout_s: float = 1.0) -> bool:
    """Send what is queued, waiting at most `timeout_s`; False if traces were left behind."""
    global _installed
    if client is None:
        return True
    if client is _installed:
        _installed = None
    queue = client.tracing_queue
    client.close(timeout=timeout_s)
    return queue is None or queue.unfinished_tasks == 0
