"""Interlock's errors in one place (the core's, and the control plane's `DependencyError`)."""

from graphs.core.errors import (
    ConfigError,
    GuardRefusal,
    InputError,
    InterlockError,
    NotFoundError,
)
from tools.errors import DependencyError

__all__ = ["ConfigError", "DependencyError", "GuardRefusal", "InputError", "InterlockError",
           "NotFoundError"]
