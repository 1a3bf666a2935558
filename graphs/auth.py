"""Who may do what on the LangGraph server (`"auth"` in langgraph.json).

An API key (header `x-api-key`, or `Authorization: Bearer <key>`) stands for an actor: support
staff, or one customer. No key or an unknown key: 401. Staff see every thread and may approve
refunds. A customer creates threads that carry their identity, sees and resumes only those
(any other thread is "not found"), and may not answer an approval. The graph takes the actor
from this authenticated user, never from the request body (see `graphs/core/actors.py`).

`make_auth(shared_identity=...)` builds the same rules for a server that scopes threads by the
user's identity itself (Aegra, `graphs/aegra.py`): every user then has that one identity, so
the server's own scoping hides nothing from staff, and ownership is these rules' alone, kept in
the thread's `actor` metadata (the server writes `owner` itself).
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph_sdk import Auth

from graphs.admission import command_problem, input_problem
from graphs.core.actors import is_staff
from graphs.keys import KeyRing, identity_of, presented_key
from graphs.settings import Settings

__all__ = ["OWNER_KEYS", "auth", "make_auth"]

OWNER_KEYS = ("owner", "actor")
"""Thread metadata that names the owner: set by these rules only, never by a caller."""

_state: dict[str, Any] = {}


def _settings() -> Settings:
    """Settings, read once on first use (not at import)."""
    if "settings" not in _state:
        _state["settings"] = Settings.from_env()
    settings: Settings = _state["settings"]
    return settings


def _ring() -> KeyRing:
    if "ring" not in _state:
        _state["ring"] = KeyRing(_settings().api_keys_path)
    ring: KeyRing = _state["ring"]
    return ring


def make_auth(*, shared_identity: str | None = None) -> Auth:
    """The server's auth rules; with `shared_identity`, for a server that scopes by identity."""
    rules = Auth()
    key = "actor" if shared_identity else "owner"

    @rules.authenticate
    async def authenticate(headers: Any) -> dict[str, Any]:
        """Map the request's API key to an actor; refuse a request without a valid one."""
        presented = presented_key(headers)
        if not presented:
            raise Auth.exceptions.HTTPException(status_code=401,
                                                detail="an API key is required")
        ring = _ring()
        entry = await asyncio.to_thread(ring.find, presented)
        if entry is None:
            raise Auth.exceptions.HTTPException(status_code=401, detail="invalid API key")
        staff = is_staff(entry.actor)
        identity = identity_of(entry)
        return {"identity": shared_identity or identity, "actor": identity,
                "display_name": entry.label or identity,
                "permissions": ["staff"] if staff else ["customer"],
                "kind": entry.actor["kind"], "customer_id": entry.actor["customer_id"]}

    def owned(metadata: dict[str, Any], ctx: Auth.types.AuthContext) -> None:
        """The caller owns it, whatever the request said (in place: the server keeps it)."""
        for name in OWNER_KEYS:
            metadata.pop(name, None)
        metadata[key] = metadata["actor"] = _actor(ctx)

    @rules.on.threads.create
    async def create_thread(ctx: Auth.types.AuthContext, value: Any) -> Auth.types.FilterType:
        """Every thread records who created it (the filter a create returns becomes metadata)."""
        metadata = value.get("metadata")
        if metadata is None:
            metadata = value["metadata"] = {}
        owned(metadata, ctx)
        return {key: _actor(ctx)}

    @rules.on.threads.create_run
    async def create_run(ctx: Auth.types.AuthContext, value: Any
                         ) -> Auth.types.FilterType | None:
        """Runs on one's own threads only; only the user speaks; a customer sends messages only.

        A thread a run creates (`if_not_exists="create"`, a kept stateless run) is owned by
        the caller, whatever metadata the request carried. A command can answer an approval
        (`resume`), write state (`update`) or start any node (`goto`), and static interrupts
        stop the graph where it never waits: all of that is for staff.
        """
        metadata = value.get("metadata")
        if isinstance(metadata, dict):
            # In place: a thread this run creates keeps it; on an existing thread the run's
            # metadata names no owner, so the graph sees the thread's own (`server_owner`).
            if value.get("thread_id") is None or value.get("if_not_exists") == "create":
                owned(metadata, ctx)
            else:
                for name in OWNER_KEYS:
                    metadata.pop(name, None)
        # The LangGraph server hands the run's fields under `kwargs`; Aegra, at the top level.
        kwargs = value.get("kwargs") or value
        if problem := input_problem(kwargs.get("input"), _settings()):
            raise Auth.exceptions.HTTPException(status_code=422, detail=problem)
        if _is_staff(ctx):
            # Staff's run keeps the thread's owner the edge wrote into its config (Aegra hands
            # the run's config on as this handler leaves it).
            return None
        config_metadata = (kwargs.get("config") or {}).get("metadata")
        if isinstance(config_metadata, dict):
            for name in OWNER_KEYS:
                config_metadata.pop(name, None)
        if command := kwargs.get("command"):
            raise Auth.exceptions.HTTPException(status_code=403,
                                                detail=command_problem(command))
        if kwargs.get("interrupt_before") or kwargs.get("interrupt_after"):
            raise Auth.exceptions.HTTPException(
                status_code=403, detail="customers may not set static interrupts on a run")
        return {key: _actor(ctx)}

    @rules.on.threads.update
    async def update_thread(ctx: Auth.types.AuthContext, value: Any) -> bool:
        """Writing a thread's state or metadata directly: staff only."""
        return _is_staff(ctx)

    @rules.on.threads
    async def own_threads(ctx: Auth.types.AuthContext, value: Any
                          ) -> Auth.types.FilterType | None:
        """Reading, searching, updating or deleting threads: staff any, a customer their own."""
        return None if _is_staff(ctx) else {key: _actor(ctx)}

    @rules.on.assistants
    async def assistants(ctx: Auth.types.AuthContext, value: Any) -> bool:
        """Everyone may read the assistants; only staff may change them."""
        return _is_staff(ctx) or ctx.action in ("read", "search")

    @rules.on
    async def staff_only(ctx: Auth.types.AuthContext, value: Any) -> bool:
        """Anything else (the store, crons): staff only."""
        return _is_staff(ctx)

    return rules


def _actor(ctx: Auth.types.AuthContext) -> str:
    """Who the authenticated user is (`staff:<key id>`, `customer:<id>`)."""
    found: Any = None
    try:
        found = ctx.user["actor"]  # the LangGraph server's user
    except (KeyError, TypeError):
        found = getattr(ctx.user, "actor", None)  # Aegra's
    return str(found or ctx.user.identity)


def _is_staff(ctx: Auth.types.AuthContext) -> bool:
    return "staff" in ctx.permissions


auth = make_auth()
"""The rules langgraph.json names (the LangGraph server)."""
