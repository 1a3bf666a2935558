"""The control plane's errors: a dependency failed, and whether another attempt may succeed."""

from __future__ import annotations

from graphs.core.errors import InterlockError

__all__ = ["DependencyError"]


class DependencyError(InterlockError):
    """A dependency failed; `retryable` says whether another attempt may succeed."""

    code = "dependency_failed"

    def __init__(
        self,
        message: str,
        *,
        dependency: str,
        retryable: bool,
        status: int | None = None,
        retry_after_s: float | None = None,
        reason: str = "error",
    ) -> None:
        super().__init__(f"{dependency}: {message}")
        self.dependency = dependency
        self.retryable = retryable
        self.status = status
        self.retry_after_s = retry_after_s
        self.reason = reason

    def to_dict(self) -> dict[str, str]:
        """The error as plain data, naming the dependency."""
        return {**super().to_dict(), "dependency": self.dependency, "reason": self.reason}
