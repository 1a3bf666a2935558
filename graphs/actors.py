"""The earlier home of `graphs.core.actors` (kept so existing imports work)."""

from graphs.core.actors import (
    STAFF,
    Actor,
    as_actor,
    is_staff,
    may_act_for,
    resolve_actor,
    server_owner,
    viewer_for,
    viewer_of,
)

__all__ = ["STAFF", "Actor", "as_actor", "is_staff", "may_act_for", "resolve_actor",
           "server_owner", "viewer_for", "viewer_of"]
