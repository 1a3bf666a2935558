"""Interlock on Aegra (several replicas on Postgres and Redis): its HTTP app and auth rules.

Aegra serves LangGraph graphs over the Agent Protocol, with runs queued in Redis and taken by
any replica's workers (`make cluster`). It reads `cluster/aegra.json`, which names these two:
- `app`: Interlock's edge (keys, limits, admission), as Aegra wants a custom HTTP app, on a
  FastAPI app of its own (Aegra accepts nothing else);
- `auth`: Interlock's auth rules for a server that scopes every thread by the user's identity
  itself and writes `owner` into its metadata (Aegra does both, and has no setting to stop it):
  every user gets one identity, so that scoping hides nothing from staff, and ownership is the
  rules' alone, in `actor` (see `graphs/auth.py`).
"""

from __future__ import annotations

import importlib
from typing import Any

from starlette.middleware import Middleware

from graphs.auth import make_auth
from graphs.edge import Edge

__all__ = ["SHARED_IDENTITY", "app", "auth"]

SHARED_IDENTITY = "interlock"
"""The one identity Aegra sees; who the caller is lives in the user's `actor`."""

auth = make_auth(shared_identity=SHARED_IDENTITY)
"""The auth rules `cluster/aegra.json` names."""


def _app() -> Any:
    # FastAPI comes with Aegra (its own environment), not with Interlock's.
    fastapi = importlib.import_module("fastapi")
    return fastapi.FastAPI(middleware=[Middleware(Edge)], docs_url=None, redoc_url=None,
                           openapi_url=None)


app = _app()
"""The HTTP app `cluster/aegra.json` names: the edge in front of every route."""
