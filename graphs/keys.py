"""API keys of the LangGraph server: each stands for an actor; only its SHA-256 is stored."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from graphs.core.actors import Actor, as_actor
from graphs.core.errors import ConfigError

__all__ = ["ApiKey", "KeyRing", "add_key", "find_key", "identity_of", "load_keys", "presented_key"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKey:
    """One API key, as stored: never the key itself."""

    id: str
    """A short public id, to list and revoke keys by."""
    sha256: str
    """Hex SHA-256 of the key."""
    actor: Actor
    """Who the key stands for."""
    label: str
    """A note for people (whose key it is)."""


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def load_keys(path: Path) -> list[ApiKey]:
    """The keys in `path` (none if the file does not exist); ConfigError if it is malformed."""
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
        return [ApiKey(id=str(k["id"]), sha256=str(k["sha256"]), label=str(k.get("label", "")),
                       actor=_actor(k["actor"])) for k in data["keys"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"malformed key file {path}: {exc}",
                          variable="INTERLOCK_API_KEYS_FILE") from None


def _actor(raw: Any) -> Actor:
    if (actor := as_actor(raw)) is None:
        raise ValueError(f"not an actor: {raw!r}")
    return actor


def add_key(path: Path, actor: Actor, *, label: str = "") -> tuple[ApiKey, str]:
    """Create a key for `actor`; return its record and the key (shown once, never stored)."""
    key = f"il_{secrets.token_urlsafe(24)}"
    entry = ApiKey(id=secrets.token_hex(4), sha256=_digest(key), actor=actor, label=label)
    existing = load_keys(path)
    records = [{"id": k.id, "sha256": k.sha256, "actor": dict(k.actor), "label": k.label}
               for k in existing]
    records.append({"id": entry.id, "sha256": entry.sha256, "actor": dict(actor),
                    "label": label, "created_at": datetime.now(UTC).isoformat()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"keys": records}, indent=2))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return entry, key


def find_key(keys: list[ApiKey], presented: str) -> ApiKey | None:
    """The key matching `presented`, compared in constant time; None if none does."""
    digest = _digest(presented)
    found = None
    for entry in keys:
        if hmac.compare_digest(entry.sha256, digest):
            found = entry
    return found


def identity_of(entry: ApiKey) -> str:
    """The identity a key stands for on the server: `staff:<key id>` or `customer:<id>`."""
    if entry.actor["kind"] == "staff":
        return f"staff:{entry.id}"
    return f"customer:{entry.actor['customer_id']}"


def presented_key(headers: Mapping[Any, Any]) -> str | None:
    """The key a request presents: `x-api-key`, or `Authorization: Bearer <key>`.

    Headers as bytes (the LangGraph server, ASGI) or as text (Aegra), any case.
    """
    found = {(k.decode("latin-1") if isinstance(k, bytes) else str(k)).lower():
             (v.decode("latin-1") if isinstance(v, bytes) else str(v))
             for k, v in headers.items()}
    if key := found.get("x-api-key", "").strip():
        return key
    value = found.get("authorization", "").strip()
    if value.lower().startswith("bearer "):
        return value[7:].strip() or None
    return None


class KeyRing:
    """The keys in a file, read again when the file changes (new keys work without a restart)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cached: tuple[float, list[ApiKey]] = (-2.0, [])  # (the file's mtime, its keys)

    def keys(self) -> list[ApiKey]:
        """The current keys (one `stat` per call; the file is read only when it changed)."""
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            mtime = -1.0
        if self._cached[0] != mtime:
            self._cached = (mtime, load_keys(self.path))
        return self._cached[1]

    def find(self, presented: str) -> ApiKey | None:
        """The key matching `presented`, if any."""
        return find_key(self.keys(), presented)
