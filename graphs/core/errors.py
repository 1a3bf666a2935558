"""The root of Interlock's one error hierarchy, split by who must act (imports nothing of ours).

A dependency's failures are the control plane's: `tools.errors.DependencyError`.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "GuardRefusal",
    "InputError",
    "InterlockError",
    "NotFoundError",
]


class InterlockError(Exception):
    """Root of every error Interlock raises on purpose."""

    code: str = "interlock_error"
    """A stable, machine-readable code for this kind of error."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str]:
        """The error as plain data, for JSON output and state."""
        return {"code": self.code, "message": self.message}


class InputError(InterlockError):
    """The user must act: the request itself is unusable (empty, too large, binary, malformed)."""

    code = "bad_input"

    def __init__(self, message: str, *, field: str = "message") -> None:
        super().__init__(message)
        self.field = field


class NotFoundError(InputError):
    """The user asked for something that does not exist, or that this actor may not see."""

    code = "not_found"


class ConfigError(InterlockError):
    """The operator must act: a setting is missing or malformed."""

    code = "bad_config"

    def __init__(self, message: str, *, variable: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


class GuardRefusal(InterlockError):
    """Policy refused the request; `guard` names the guard, `reasons` say why."""

    code = "refused"

    def __init__(self, message: str, *, guard: str, reasons: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.guard = guard
        self.reasons = reasons
