"""Who is asking: taken from the server's auth or the run's context, never from user input."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from typing_extensions import TypedDict

if TYPE_CHECKING:  # LangGraph loads when a graph runs, not for the CLI's key commands
    from langchain_core.runnables import RunnableConfig
    from langgraph.runtime import Runtime

    from graphs.core.state import InterlockContext, RequestInfo

__all__ = ["STAFF", "Actor", "as_actor", "is_staff", "may_act_for", "resolve_actor",
           "server_owner", "viewer_for", "viewer_of"]


class Actor(TypedDict):
    """Who is asking. Never read from messages or other user-controlled input."""

    kind: Literal["staff", "customer"]
    """Support staff see every order and may approve refunds; a customer sees their own only."""
    customer_id: int | None
    """The customer's id when `kind` is `customer`, else None."""


STAFF: Actor = {"kind": "staff", "customer_id": None}
"""The default actor of the Python API and the CLI."""



def _field(value: Any, name: str) -> Any:
    """`value[name]` or `value.name`: the server's user objects support either."""
    try:
        return value[name]
    except (KeyError, TypeError, IndexError):
        return getattr(value, name, None)


def as_actor(value: Any) -> Actor | None:
    """An Actor from a mapping or an object with `kind` / `customer_id`, if it is a valid one."""
    kind = _field(value, "kind")
    customer_id = _field(value, "customer_id")
    if kind == "staff":
        return Actor(kind="staff", customer_id=None)
    if kind == "customer" and isinstance(customer_id, int) and not isinstance(customer_id, bool):
        return Actor(kind="customer", customer_id=customer_id)
    return None


def resolve_actor(runtime: Runtime[InterlockContext] | None,
                  config: RunnableConfig | None = None) -> Actor:
    """The actor of this invocation: the server's authenticated user, else the run context.

    With an authenticated LangGraph server user present, the context is ignored: a client may
    send any context, but it cannot choose who it is. A user or context that does not describe
    a valid actor yields a customer who sees nothing (fail closed), never staff.
    """
    if config is None:
        config = _config()
    server = runtime.server_info if runtime is not None else None
    user = server.user if server is not None and server.user is not None else (
        (config.get("configurable") or {}).get("langgraph_auth_user"))
    if user is not None:
        actor = as_actor(user)
        return actor or Actor(kind="customer", customer_id=None)
    from graphs.core.state import InterlockContext

    context = runtime.context if runtime is not None else None
    if context is None:
        return STAFF
    actor = as_actor(context.actor if isinstance(context, InterlockContext) else
                    getattr(context, "actor", None) or (context.get("actor")
                                                        if isinstance(context, dict) else None))
    return actor or Actor(kind="customer", customer_id=None)


def is_staff(actor: Actor) -> bool:
    """Whether the actor is support staff."""
    return actor["kind"] == "staff"


def may_act_for(invoker: Actor, requester: Actor) -> bool:
    """Whether `invoker` may carry out a request of `requester`, or use a thread it owns.

    Staff may do either for anyone (resume a customer's run, approve a refund); a customer
    only for themselves. A request in state that claims another actor than the one driving
    the run was not made through the intake guard, and is refused.
    """
    return is_staff(invoker) or invoker == requester


def viewer_for(actor: Actor, owner: Actor | None) -> Actor:
    """Whose view a request of `actor` in a thread of `owner` takes.

    A customer's thread is that customer's to read in full, so what staff look up there is
    looked up as the customer sees it: nothing of another customer's lands in it.
    """
    if is_staff(actor) and owner is not None and not is_staff(owner):
        return owner
    return actor


def viewer_of(request: RequestInfo) -> Actor:
    """Whose view the request's reads take (see `viewer_for`)."""
    return request.get("viewer") or request["actor"]


def server_owner(config: RunnableConfig | None = None) -> Actor | None:
    """The thread's owner as the server records it (`actor`, or `owner`, in the run's metadata).

    The server's auth handler sets it when a run creates a thread and otherwise leaves the
    thread's own, so a graph learns whose thread it runs in even before its first request
    (a run from an earlier checkpoint, or the first run on a thread someone else created).
    """
    if config is None:
        config = _config()
    metadata = config.get("metadata") or {}
    # `actor` where the server writes `owner` itself (Aegra: see graphs/auth.py).
    owner = metadata.get("actor") or metadata.get("owner")
    if not isinstance(owner, str):
        return None
    kind, _, rest = owner.partition(":")
    if kind == "staff":
        return Actor(kind="staff", customer_id=None)
    if kind == "customer" and rest.isdigit():
        return Actor(kind="customer", customer_id=int(rest))
    return None


def _config() -> RunnableConfig:
    from langgraph.config import get_config

    try:
        return get_config()
    except RuntimeError:  # called outside a graph run
        return {}
