"""Who may do what on the LangGraph server (`"auth"` in langgraph.json).

An API key (header `x-api-key`, or `Authorization: Bearer <key>`) stands for an actor: support
staff, or one customer. No key or an unknown key: 401. Staff see every thread and may approve
refunds. A customer creates threads that carry their identity, sees and resumes only those
(any other thread is "not found"), and may not answer an approval. The graph takes the actor
from this authenticated user, never from the request body (see `graphs/actors.py`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph_sdk import Auth

from graphs.actors import is_staff
from graphs.keys import ApiKey, find_key, load_keys
from graphs.settings import Settings

__all__ = ["auth"]

auth = Auth()

_KEYS_PATH = Settings.from_env().api_keys_path  # settings are read once, at start
_cached: tuple[float, list[ApiKey]] = (-2.0, [])  # (the file's mtime, its keys)


def _read() -> list[ApiKey]:
    global _cached
    try:
        mtime = _KEYS_PATH.stat().st_mtime
    except FileNotFoundError:
        mtime = -1.0
    if _cached[0] != mtime:
        _cached = (mtime, load_keys(_KEYS_PATH))
    return _cached[1]


async def _keys() -> list[ApiKey]:
    """The current keys (re-read when the file changes, so new keys work without a restart)."""
    return await asyncio.to_thread(_read)


def _presented(headers: dict[bytes, bytes]) -> str | None:
    if key := headers.get(b"x-api-key"):
        return key.decode("latin-1").strip()
    value = headers.get(b"authorization", b"").decode("latin-1").strip()
    if value.lower().startswith("bearer "):
        return value[7:].strip()
    return None


@auth.authenticate
async def authenticate(headers: dict[bytes, bytes]) -> dict[str, Any]:
    """Map the request's API key to an actor; refuse a request without a valid one."""
    presented = _presented(headers)
    if not presented:
        raise Auth.exceptions.HTTPException(status_code=401, detail="an API key is required")
    entry = find_key(await _keys(), presented)
    if entry is None:
        raise Auth.exceptions.HTTPException(status_code=401, detail="invalid API key")
    staff = is_staff(entry.actor)
    identity = f"staff:{entry.id}" if staff else f"customer:{entry.actor['customer_id']}"
    return {"identity": identity, "display_name": entry.label or identity,
            "permissions": ["staff"] if staff else ["customer"],
            "kind": entry.actor["kind"], "customer_id": entry.actor["customer_id"]}


def _is_staff(ctx: Auth.types.AuthContext) -> bool:
    return "staff" in ctx.permissions


@auth.on.threads.create
async def create_thread(ctx: Auth.types.AuthContext, value: Any) -> Auth.types.FilterType:
    """Every thread records who created it (the filter a create returns becomes metadata)."""
    metadata = value.get("metadata")
    if metadata is None:
        metadata = value["metadata"] = {}
    metadata["owner"] = ctx.user.identity  # in place: the server keeps this very dict
    return {"owner": ctx.user.identity}


@auth.on.threads.create_run
async def create_run(ctx: Auth.types.AuthContext, value: Any) -> Auth.types.FilterType | None:
    """Runs on one's own threads only; a customer sends messages, never commands.

    A command can answer an approval (`resume`), write state (`update`) or start any node
    (`goto`): all of that is for staff. A customer's run goes through the intake guard.
    """
    if _is_staff(ctx):
        return None
    command = (value.get("kwargs") or {}).get("command")
    if command:
        detail = ("only support staff may answer a refund approval"
                  if isinstance(command, dict) and command.get("resume") is not None
                  else "customers may send messages only, not commands")
        raise Auth.exceptions.HTTPException(status_code=403, detail=detail)
    return {"owner": ctx.user.identity}


@auth.on.threads.update
async def update_thread(ctx: Auth.types.AuthContext, value: Any) -> bool:
    """Writing a thread's state or metadata directly: staff only."""
    return _is_staff(ctx)


@auth.on.threads
async def own_threads(ctx: Auth.types.AuthContext, value: Any) -> Auth.types.FilterType | None:
    """Reading, searching, updating or deleting threads: staff any, a customer their own."""
    return None if _is_staff(ctx) else {"owner": ctx.user.identity}


@auth.on.assistants
async def assistants(ctx: Auth.types.AuthContext, value: Any) -> bool:
    """Everyone may read the assistants; only staff may change them."""
    return _is_staff(ctx) or ctx.action in ("read", "search")


@auth.on
async def staff_only(ctx: Auth.types.AuthContext, value: Any) -> bool:
    """Anything else (the store, crons): staff only."""
    return _is_staff(ctx)
